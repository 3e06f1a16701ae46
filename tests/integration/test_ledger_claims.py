"""Claims of docs/contract.md about the ingest path, checked through Kafka on a real worker.

- `wrong_key`: a message whose Kafka key is not its event's `account_id` is dead-lettered with
  that reason (and its original bytes), never sequenced, while the events around it are.
- The ledger topic is compacted by account after the dedup window (`cleanup.policy=compact`,
  `min.compaction.lag.ms` = PW_DEDUP_WINDOW_DAYS), and a worker that starts on a compacted
  ledger continues every account's chain: seq n+1 linked to the hash of seq n, no fork, no gap.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.settle import read_to_end, wait_settled
from tests.integration.test_pipeline import assert_chains_verify

pytestmark = pytest.mark.integration


def test_a_message_keyed_by_another_account_is_dead_lettered_as_wrong_key(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    events = [e for e, _ in generate(40, seed=28)]
    victim = next(e for e in events if e["action"] != "permission.grant")
    others = [e for e in events if e is not victim]
    worker = Worker(ns).start()
    try:
        ns.send(others[:20])
        producer = KafkaProducer(bootstrap_servers=ns.settings.kafka_broker, acks="all")
        raw = orjson.dumps(victim)
        try:
            producer.send(ns.settings.actions_topic, key=b"SOME-OTHER-ACCOUNT", value=raw)
            producer.send(ns.settings.actions_topic, key=None, value=raw)  # no key at all
            producer.flush(30)
        finally:
            producer.close()
        ns.send(others[20:])
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(others),
            120,
            "the other events stored",
        )
        wait_settled(ns)

        letters = [orjson.loads(r.value) for r in read_to_end(ns, ns.settings.deadletter_topic)]
        assert [d["reason"] for d in letters] == ["wrong_key", "wrong_key"]
        assert all(
            d["raw"] == raw.decode() and d["topic"] == ns.settings.actions_topic for d in letters
        )
        assert "account_id" in letters[0]["detail"]
        assert ns.scalar("SELECT count() FROM audit.events") == len(others)
        assert (
            ns.scalar(
                "SELECT count() FROM audit.events WHERE event_id = {e:String}",
                {"e": victim["event_id"]},
            )
            == 0
        )
        ledger_ids = {
            orjson.loads(r.value)["event_id"] for r in read_to_end(ns, ns.settings.ledger_topic)
        }
        assert victim["event_id"] not in ledger_ids and len(ledger_ids) == len(others)
        assert_chains_verify(ns)
    finally:
        worker.stop()


def _topic_config(ns: Namespace, topic: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=ns.settings.kafka_broker)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {name: entry["value"] for name, entry in described["topic"][topic].items()}
    finally:
        admin.close()


def _compact_now(ns: Namespace, lag_ms: int = 0) -> None:
    """Let the broker's log cleaner compact the ledger topic within seconds (roll a segment every
    second, no compaction lag): what seven days of dedup window would do, made quick. With
    `lag_ms`, entries younger than that are left alone again."""
    admin = KafkaAdminClient(bootstrap_servers=ns.settings.kafka_broker)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    ns.settings.ledger_topic,
                    configs={
                        "cleanup.policy": "compact",
                        "min.compaction.lag.ms": str(lag_ms),
                        "segment.ms": "1000",
                        "min.cleanable.dirty.ratio": "0.01",
                        "delete.retention.ms": "0",
                    },
                )
            ]
        )
    finally:
        admin.close()


def _ledger(ns: Namespace) -> dict[str, list[dict[str, Any]]]:
    by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(
        read_to_end(ns, ns.settings.ledger_topic), key=lambda r: (r.partition, r.offset)
    ):
        entry = orjson.loads(record.value)
        by_account[entry["account_id"]].append(entry)
    return by_account


def test_the_chain_continues_on_a_compacted_ledger_after_a_restart(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    stream = [e for e, _ in generate(3_000, seed=128)]
    first, second = stream[:2_000], stream[2_000:]
    worker = Worker(ns).start()
    try:
        config = _topic_config(ns, ns.settings.ledger_topic)
        assert config["cleanup.policy"] == "compact"
        assert config["min.compaction.lag.ms"] == str(
            round(ns.settings.dedup_window_days * 86_400_000)
        )

        _compact_now(ns)
        for i in range(0, len(first), 250):  # in chunks, so the ledger rolls several segments
            ns.send(first[i : i + 250])
            wait_for(
                lambda n=i + 250: ns.scalar("SELECT count() FROM audit.events") >= n,
                120,
                "chunk stored",
            )
        wait_settled(ns)
        heads = {a: entries[-1] for a, entries in _ledger(ns).items()}
        # the cleaner runs every 15 s by default: wait until it has removed older entries
        wait_for(lambda: _compacted(ns, len(first)), 180, "the ledger compacted", interval=2.0)
        worker.stop()

        compacted = _ledger(ns)
        assert sum(map(len, compacted.values())) < len(first)
        assert {a: entries[-1]["seq"] for a, entries in compacted.items()} == {
            a: h["seq"] for a, h in heads.items()
        }

        # the cleaner keeps running (every 15 s): from here on it leaves new entries alone, so
        # the first entry after each head is still on the ledger when it is read at the end
        _compact_now(ns, lag_ms=round(ns.settings.dedup_window_days * 86_400_000))
        worker = Worker(ns).start()  # rebuilds the chain heads from the compacted ledger
        ns.send(second)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(stream),
            180,
            "every event stored",
        )
        wait_settled(ns)
        assert (
            ns.sql("SELECT count(), uniqExact(account_id, event_id) FROM audit.events")[0]
            == [len(stream)] * 2
        )
        assert_chains_verify(ns)  # seq 1..n and every hash linked, across the compaction
        after = _ledger(ns)
        continued = 0
        for account, head in heads.items():
            later = [e for e in after[account] if e["seq"] > head["seq"]]
            if later:
                assert (
                    later[0]["seq"] == head["seq"] + 1 and later[0]["prev_hash"] == head["hash"]
                ), account
                continued += 1
        assert continued == len(heads)  # every account got events after the restart
    finally:
        worker.stop()


def _compacted(ns: Namespace, written: int) -> bool:
    return sum(map(len, _ledger(ns).values())) < written
