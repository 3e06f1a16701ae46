"""Wait until a worker has nothing in flight, so counts taken afterwards are final.

`wait_for(count >= n)` says enough rows arrived, not that no more will: a redelivered record
still in the pipeline can add a row (or a duplicate) a moment later. `wait_settled` waits on the
offsets instead: the worker's ingest service has committed every record of the actions topic
(its ledger entries and state records were written in the same transaction), and the warehouse loader has committed every
record of the ledger and alerts topics (it commits only after the rows are stored).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from partnerwatch.local_worker import Namespace, wait_for


def _behind(ns: Namespace, loader: bool = True) -> list[str]:
    """What is not consumed yet, as `group topic[partition] committed/end` (empty: settled);
    `loader=False`: the worker's ingest only (every action sequenced, stored or not)."""
    s = ns.settings
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_broker)
    consumer = KafkaConsumer(
        bootstrap_servers=s.kafka_broker, group_id=None, isolation_level="read_committed"
    )
    try:
        behind = []
        # (group, topic, transactional): a transactional topic at rest ends with a commit marker,
        # which a consumer need not pass (its last record is at end - 2)
        checks = [(s.ingest_group, s.actions_topic, False)]
        if loader:
            checks += [
                (s.warehouse_group, s.ledger_topic, True),
                (s.warehouse_group, s.alerts_topic, False),
            ]
        for group, topic, transactional in checks:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            ends = consumer.end_offsets(parts)
            committed = admin.list_group_offsets({group: None})[group]
            for tp in parts:
                end = ends[tp]
                done = committed[tp].offset if tp in committed else -1
                if end > 0 and done < end - (1 if transactional else 0):
                    behind.append(f"{group} {topic}[{tp.partition}] {done}/{end}")
        return behind
    finally:
        consumer.close()
        admin.close()


def sequenced(ns: Namespace) -> bool:
    """The worker has sequenced (or dead-lettered) every record on the actions topic."""
    return not _behind(ns, loader=False)


def wait_settled(ns: Namespace, timeout: float = 180.0) -> None:
    """Every accepted record sequenced and stored: the warehouse's counts will not move now."""
    last: list[str] = []

    def settled() -> bool:
        last[:] = _behind(ns)
        return not last

    try:
        wait_for(
            settled,
            timeout,
            "the worker and the warehouse loader to commit everything",
            interval=1.0,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still behind: {', '.join(last)}") from None


def read_to_end(ns: Namespace, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every committed record of `topic` up to its end offsets as of the call (no quiet window:
    the read stops when each partition's position reaches its end)."""
    s = ns.settings
    consumer = KafkaConsumer(
        bootstrap_servers=s.kafka_broker,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout}s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
