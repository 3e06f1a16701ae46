"""Ledger snapshots and the bounded dedup window on the real broker and the embedded warehouse:
a restart reads the snapshot and the ledger after it, not the whole ledger, and goes on exactly;
ids held only in the dedup filters are confirmed against the warehouse before they are dropped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, metric, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.state_check import caught_up, committed, differences

pytestmark = pytest.mark.integration


def verify_chain(ns: Namespace) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", "verify-chain"],
        env=ns.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "no break" in done.stdout


def stored(ns: Namespace) -> int:
    return int(ns.scalar("SELECT count() FROM audit.events"))


def test_a_restart_reads_the_snapshot_and_the_ledger_after_it(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_TOPIC_PARTITIONS": "1", "PW_SNAPSHOT_SECONDS": "0.5"})
    events = [e for e, _ in generate(3_000, seed=17)]
    first, second, third = events[:2_000], events[2_000:2_500], events[2_500:]
    ns.send(first)
    worker = Worker(ns).start()
    try:
        wait_for(lambda: metric(ns.port, "pw_events_accepted_total") >= 2_000, 180, "2,000")
        # Batches one after another, until a snapshot was due (every 0.5 s) and taken.
        for i in range(0, len(second), 100):
            ns.send(second[i : i + 100])
            done = 2_000 + i + 100
            wait_for(
                lambda n=done: metric(ns.port, "pw_events_accepted_total") >= n, 120, f"{done}"
            )
        wait_for(lambda: metric(ns.port, "pw_ledger_snapshots_total") >= 1, 60, "a snapshot")
        assert metric(ns.port, "pw_ingest_load_ledger_entries_total") == 0  # a fresh ledger
    finally:
        worker.stop()
    heads = [r for r in committed(ns, ns.settings.ledger_snapshot_topic) if r.key == b"head"]
    assert heads, "no snapshot head on the snapshot topic"
    last = orjson.loads(heads[-1].value)
    assert 0 < last["ledger_end"] <= 2_500 + 10 and last["next_offset"] <= 2_500

    worker = Worker(ns).start()
    try:
        # Every event again (redelivered by a client), and the third part new.
        ns.send(events)
        wait_for(
            lambda: metric(ns.port, "pw_events_accepted_total") >= len(third), 180, "the third part"
        )
        wait_for(lambda: caught_up(ns), 120, "the ledger caught up")
        read = metric(ns.port, "pw_ingest_load_ledger_entries_total")
        assert read < 2_500, f"the restart read {read} ledger entries: the snapshot was not used"
        assert metric(ns.port, "pw_events_accepted_total") == len(third)
        assert metric(ns.port, "pw_events_duplicate_total") == 2_500
        wait_for(lambda: stored(ns) >= 3_000, 120, "3,000 stored")
        assert stored(ns) == 3_000
        assert ns.scalar("SELECT uniqExact(account_id, event_id) FROM audit.events") == 3_000
        assert differences(ns) == []
        verify_chain(ns)
    finally:
        worker.stop()


def test_a_clean_stop_hands_over_a_snapshot_and_the_restart_reads_no_ledger(
    kafka_broker: str, tmp_path: Path
) -> None:
    """No periodic snapshot is due in this run: the snapshot comes with each partition's last
    transaction at the stop (streams/ingest_partition.py)."""
    # no periodic snapshot in this run, however slow the machine (the default is 60 s)
    ns = Namespace(tmp_path, extra_env={"PW_TOPIC_PARTITIONS": "2", "PW_SNAPSHOT_SECONDS": "3600"})
    events = [e for e, _ in generate(1_500, seed=31)]
    first, rest = events[:1_200], events[1_200:]
    ns.send(first)
    worker = Worker(ns).start()
    try:
        wait_for(lambda: metric(ns.port, "pw_events_accepted_total") >= 1_200, 180, "1,200")
        wait_for(lambda: caught_up(ns), 120, "the ledger caught up")
        assert metric(ns.port, "pw_ledger_snapshots_total") == 0  # none due yet
        assert metric(ns.port, "pw_ingest_transaction_seconds_count") >= 1
        assert metric(ns.port, "pw_ingest_transaction_seconds_sum") > 0
    finally:
        worker.stop()
    heads: dict[int, dict[str, int]] = {}
    for record in committed(ns, ns.settings.ledger_snapshot_topic):
        if record.key == b"head":
            heads[record.partition] = orjson.loads(record.value)
    ends = {r.partition: r.offset for r in committed(ns, ns.settings.ledger_topic)}
    assert sorted(heads) == sorted(ends) == [0, 1], (heads, ends)
    for partition, head in heads.items():  # each snapshot as far as its ledger goes
        assert head["ledger_end"] == ends[partition] + 1

    worker = Worker(ns).start()
    try:
        ns.send(events)  # the first part again (repeats), and the rest new
        wait_for(lambda: metric(ns.port, "pw_events_accepted_total") >= len(rest), 180, "the rest")
        wait_for(lambda: caught_up(ns), 120, "the ledger caught up")
        assert metric(ns.port, "pw_ingest_load_ledger_entries_total") == 0
        assert metric(ns.port, "pw_events_accepted_total") == len(rest)
        assert metric(ns.port, "pw_events_duplicate_total") == len(first)
        wait_for(lambda: stored(ns) >= 1_500, 120, "1,500 stored")
        assert stored(ns) == 1_500
        assert differences(ns) == []
        verify_chain(ns)
    finally:
        worker.stop()


def test_ids_held_only_in_the_filters_are_confirmed_against_the_warehouse(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(
        tmp_path,
        extra_env={
            "PW_TOPIC_PARTITIONS": "1",
            "PW_DEDUP_EXACT_SECONDS": "1",
            "PW_DEDUP_FILTER_MB": "1",
        },
    )
    events = [e for e, _ in generate(1_200, seed=29)]
    old, trickle = events[:1_000], events[1_000:]
    ns.send(old)
    worker = Worker(ns).start()
    try:
        wait_for(lambda: stored(ns) >= 1_000, 180, "1,000 stored")
        # Seals happen before batches: a trickle of new events lets the exact tier move the
        # stored ids into the filters.
        sent = 0

        def sealed() -> bool:
            nonlocal sent
            if sent < len(trickle):
                ns.send(trickle[sent : sent + 5])
                sent += 5
            return metric(ns.port, "pw_dedup_filter_ids") >= 1_000

        wait_for(sealed, 120, "the first 1,000 ids in the dedup filters")
        accepted = 1_000 + sent
        wait_for(lambda: metric(ns.port, "pw_events_accepted_total") >= accepted, 60, "the trickle")
        ns.send(old)  # every one a repeat the exact tier no longer holds
        wait_for(
            lambda: metric(ns.port, "pw_events_duplicate_total") >= 1_000, 120, "1,000 repeats"
        )
        assert metric(ns.port, "pw_dedup_confirmed_total") == 1_000
        assert metric(ns.port, "pw_dedup_suspects_total") >= 1_000
        assert metric(ns.port, "pw_events_accepted_total") == accepted
        ns.send(trickle[sent:])
        wait_for(lambda: stored(ns) >= 1_200, 120, "1,200 stored")
        assert stored(ns) == 1_200
        assert ns.scalar("SELECT uniqExact(account_id, event_id) FROM audit.events") == 1_200
        verify_chain(ns)
    finally:
        worker.stop()
