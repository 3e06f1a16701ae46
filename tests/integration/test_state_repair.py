"""A lost detection table is detected and rebuilt from the ledger, never silently used.

Issue 15, finding 20: the worker came back from a restart with empty tables and detected on
them (false `listing_out_of_scope` alerts, `ip_outside_allowlist` quiet), writing the emptied
state back. Here the tables' changelogs are wiped while the worker is down, so it recovers
nothing; it must notice (each account's recovered seq against the ledger's head), rebuild every
account of a partition it takes up from the ledger, log and count each repair, and end with
exactly the state the ledger gives. In the second test the ledger has also lost its older
entries (as compaction does after the dedup window): the rebuild reads them from the warehouse.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import BrokerResponseError

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.state_check import (
    TABLES,
    caught_up,
    changelog_name,
    committed,
    differences,
    ledger_entries,
    rebuilt_tables,
    worker_tables,
)

pytestmark = pytest.mark.integration


def labelled_metric(ns: Namespace, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name}{labels} "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def truncate(ns: Namespace, topic: str, keep_from: dict[int, int] | None = None) -> None:
    """Delete a compacted topic's records below `keep_from[partition]` (default: all of them)."""
    admin = KafkaAdminClient(bootstrap_servers=ns.settings.kafka_broker)
    consumer = KafkaConsumer(bootstrap_servers=ns.settings.kafka_broker)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(tps)
        upto = {tp: ends[tp] if keep_from is None else keep_from.get(tp.partition, 0) for tp in tps}
        # DeleteRecords needs the delete policy: added for the deletion, then taken away again.
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": "compact,delete"}
                )
            ]
        )
        wanted = {tp: offset for tp, offset in upto.items() if offset > 0}
        wait_for(
            lambda: _deleted(admin, wanted),
            30,
            f"records of {topic} deleted (the broker applies the new policy asynchronously)",
            interval=0.2,
        )
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": "compact"})]
        )
    finally:
        consumer.close()
        admin.close()


def _deleted(admin: KafkaAdminClient, upto: dict[TopicPartition, int]) -> bool:
    try:
        admin.delete_records(upto)
    except BrokerResponseError as exc:
        if "PolicyViolation" in str(exc):
            return False  # the delete policy is not in force on every partition yet
        raise
    return True


def compacted_offsets(ns: Namespace, ends: dict[int, int]) -> dict[int, int]:
    """Per ledger partition, where to cut so that about three quarters go and every account
    keeps its last entry."""
    last: dict[int, dict[str, int]] = {}
    for record in committed(ns, ns.settings.ledger_topic):
        last.setdefault(record.partition, {})[record.key.decode()] = record.offset
    return {p: min([end * 3 // 4, *last.get(p, {}).values()]) for p, end in ends.items()}


def ledger_ends(ns: Namespace) -> dict[int, int]:
    consumer = KafkaConsumer(
        bootstrap_servers=ns.settings.kafka_broker, isolation_level="read_committed"
    )
    try:
        topic = ns.settings.ledger_topic
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def accounts_to_repair(ns: Namespace, before: dict[int, int]) -> set[str]:
    """Accounts that had entries before the restart, on partitions that got entries after it
    (the worker takes a partition up, and checks it, at its first event)."""
    accounts: dict[int, set[str]] = {}
    touched: set[int] = set()
    for record in committed(ns, ns.settings.ledger_topic):
        if record.offset < before.get(record.partition, 0):
            accounts.setdefault(record.partition, set()).add(record.key.decode())
        else:
            touched.add(record.partition)
    return set().union(*(accounts.get(p, set()) for p in touched))


def repair_log(worker: Worker) -> list[str]:
    return [
        line
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if "detect.state_repair" in line
    ]


def start(ns: Namespace, stream: list[dict[str, Any]]) -> Worker:
    worker = Worker(ns).start()
    ns.send(stream)
    wait_for(lambda: caught_up(ns), 240, f"{len(stream)} events sequenced")
    return worker


def test_a_wiped_table_is_detected_and_rebuilt_from_the_ledger(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    stream = [e for e, _ in generate(1_800, seed=77, accounts=12, attack_rate=0.01)]
    worker = start(ns, stream[:1_500])
    try:
        assert differences(ns) == []
        assert len(worker_tables(ns)["account_state"]) == 12
        worker.stop()
        for table in TABLES:
            truncate(ns, changelog_name(ns, table))
        assert worker_tables(ns) == {
            "account_state": {},
            "open_alerts": {},
        }  # the loss, as recovery will see it
        before = ledger_ends(ns)

        worker = start(ns, stream[1_500:])
        expected = accounts_to_repair(ns, before)
        assert expected  # the new events reach accounts whose history is in the ledger
        assert differences(ns) == []
        assert labelled_metric(ns, "pw_detect_state_repairs_total", '{reason="missing"}') == len(
            expected
        )
        assert labelled_metric(ns, "pw_detect_state_repair_incomplete_total") == 0
        logged = repair_log(worker)
        assert len(logged) == len(expected), logged
        assert all("detect.state_repaired" in line and "reason=missing" in line for line in logged)
        assert {re.search(r"account=(\S+)", line).group(1) for line in logged} == expected  # type: ignore[union-attr]
    finally:
        worker.stop()


def test_history_the_ledger_no_longer_holds_is_read_from_the_warehouse(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    stream = [e for e, _ in generate(1_800, seed=78, accounts=12, attack_rate=0.01)]
    worker = start(ns, stream[:1_500])
    try:
        full = ledger_entries(ns)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") == len(full),
            120,
            "every entry in the warehouse",
        )
        worker.stop()
        # The ledger loses its older entries, as compaction does after the dedup window (it
        # keeps every account's last one), and the tables are lost.
        ends = ledger_ends(ns)
        truncate(ns, ns.settings.ledger_topic, compacted_offsets(ns, ends))
        for table in TABLES:
            truncate(ns, changelog_name(ns, table))
        assert len(ledger_entries(ns)) < len(full) // 2

        worker = start(ns, stream[1_500:])
        seen = {(e["account_id"], e["seq"]) for e in full}
        everything = full + [
            e for e in ledger_entries(ns) if (e["account_id"], e["seq"]) not in seen
        ]
        wait_for(  # the changelogs trail the ledger by a state checkpoint
            lambda: worker_tables(ns) == rebuilt_tables(everything), 30, "the rebuilt tables"
        )
        repaired = accounts_to_repair(ns, ends)
        assert len(repaired) == 12
        assert labelled_metric(ns, "pw_detect_state_repairs_total", '{reason="missing"}') == len(
            repaired
        )
        assert labelled_metric(ns, "pw_detect_state_repair_incomplete_total") == 0
        from_warehouse = [
            int(m.group(1))
            for line in repair_log(worker)
            if (m := re.search(r"from_warehouse=(\d+)", line))
        ]
        assert len(from_warehouse) == len(repaired) and sum(from_warehouse) > 0
    finally:
        worker.stop()
