"""Ordering: each account's `seq` follows the order its events were sent, not their event time.

The chain check sees seq 1..n and linked hashes, which any order would pass. Here the order is
known: events of eight accounts, interleaved at random, with event times shuffled within each
account (so sorting by time would give another order), sent in two runs of the producer, then
every account's ledger (on the topic, and in the warehouse by seq) is compared with what was sent.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.event import format_ms, timestamp_ms
from tests.integration.settle import wait_settled
from tests.integration.test_pipeline import assert_chains_verify

pytestmark = pytest.mark.integration

ACCOUNTS = [f"ORD{n:02d}SELLER" for n in range(8)]
PER_ACCOUNT = 150
START = timestamp_ms("2026-11-02T08:00:00Z", "t")


def events_in_send_order(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    per_account: dict[str, list[dict[str, Any]]] = {}
    for account in ACCOUNTS:
        times = [START + i * 7_000 for i in range(PER_ACCOUNT)]
        rng.shuffle(times)  # event time says nothing about the order of sending
        per_account[account] = []
        for n, at in enumerate(times):
            event = {
                "event_id": f"{account}-{rng.randrange(10**9):09d}-{n}",  # ids in no particular order either
                "occurred_at": format_ms(at),
                "account_id": account,
                "actor": {"type": "seller", "principal_id": f"{account}-owner"},
                "action": rng.choice(["auth.login", "report.download", "listing.update"]),
            }
            if event["action"] == "listing.update":
                event |= {"marketplace": "DE", "resource": {"type": "listing", "id": f"SKU-{n}"}}
            per_account[account].append(event)
    # interleave the accounts at random, keeping each account's own order
    queues = {a: list(evs) for a, evs in per_account.items()}
    out = []
    while queues:
        account = rng.choice(sorted(queues))
        out.append(queues[account].pop(0))
        if not queues[account]:
            del queues[account]
    return out


def test_each_account_is_sequenced_in_the_order_its_events_were_sent(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    stream = events_in_send_order(seed=26)
    sent: dict[str, list[str]] = defaultdict(list)
    for event in stream:
        sent[event["account_id"]].append(event["event_id"])
    by_time = {
        a: [
            e["event_id"]
            for e in sorted(stream, key=lambda e: e["occurred_at"])
            if e["account_id"] == a
        ]
        for a in ACCOUNTS
    }
    assert all(
        by_time[a] != sent[a] != sorted(sent[a]) for a in ACCOUNTS
    )  # neither time nor id order is send order

    worker = Worker(ns).start()
    try:
        half = len(stream) // 2
        assert ns.send(stream[:half]) == half
        assert ns.send(stream[half:]) == len(stream) - half  # a second producer session
        total = len(stream)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= total,
            180,
            f"{total} stored events",
        )
        wait_settled(ns)

        # what the broker holds on each account's partition: the order sent
        on_partition: dict[str, list[str]] = defaultdict(list)
        partitions: dict[str, set[int]] = defaultdict(set)
        for record in sorted(
            ns.read_topic(ns.settings.actions_topic, expect=total),
            key=lambda r: (r.partition, r.offset),
        ):
            doc = orjson.loads(record.value)
            on_partition[doc["account_id"]].append(doc["event_id"])
            partitions[doc["account_id"]].add(record.partition)
        assert on_partition == sent
        assert all(len(p) == 1 for p in partitions.values())

        # the ledger topic: seq 1..n in the order sent, each entry naming its source offset
        ledger: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        for record in sorted(
            ns.read_topic(ns.settings.ledger_topic, expect=total),
            key=lambda r: (r.partition, r.offset),
        ):
            entry = orjson.loads(record.value)
            ledger[entry["account_id"]].append(
                (int(entry["seq"]), entry["event_id"], int(entry["ingest_offset"]))
            )
        for account in ACCOUNTS:
            seqs, ids, offsets = zip(*ledger[account], strict=True)
            assert list(seqs) == list(range(1, PER_ACCOUNT + 1)), account
            assert list(ids) == sent[account], f"ledger order of {account}"
            assert list(offsets) == sorted(offsets), account

        # the warehouse, by seq
        for account in ACCOUNTS:
            rows = ns.sql(
                "SELECT seq, event_id FROM audit.events WHERE account_id = {a:String} ORDER BY seq",
                {"a": account},
            )
            assert [int(r[0]) for r in rows] == list(range(1, PER_ACCOUNT + 1)), account
            assert [r[1] for r in rows] == sent[account], f"warehouse order of {account}"
        assert ns.scalar("SELECT count() FROM audit.events") == total
        assert_chains_verify(ns)
    finally:
        worker.stop()
