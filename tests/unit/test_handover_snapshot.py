"""A handover writes a ledger snapshot (streams/ingest_partition.py `_transaction`): the last
transaction before a partition is closed (a clean stop or a rebalance) carries one when the
ledger moved on since the last snapshot written or loaded, so that the next owner reads the
snapshot and no ledger after it. Periodic snapshots (`PW_SNAPSHOT_SECONDS`) alone left a
partition whose work ended before its first one to read its whole ledger at the next start."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from pipeline.ledger_snapshot import HEAD_KEY, checkpoint_of, load
from streams import ingest_partition
from tests.unit.test_ingest_batch import SETTINGS
from tests.unit.test_ingest_open_batch import fixed_clock, traffic, worked_through
from tests.unit.test_ingest_open_batch import writer as at_least_once_writer
from tests.unit.test_ingest_overlap import txn_writer
from tests.unit.test_state_checkpoints import settled

SNAPSHOTS = SETTINGS.ledger_snapshot_topic


def snapshots_total() -> float:
    return REGISTRY.get_sample_value("pw_ledger_snapshots_total") or 0.0


def exactly_once(
    monkeypatch: pytest.MonkeyPatch, checkpoint_seconds: float, snapshot_seconds: float
) -> tuple[ingest_partition.PartitionIngest, Any]:
    """A loaded partition writer over fakes (tests/unit/test_ingest_overlap.py `txn_writer`)."""
    part, producer, _, _ = txn_writer(monkeypatch)
    part.service.settings = SETTINGS.model_copy(
        update={
            "state_checkpoint_seconds": checkpoint_seconds,
            "snapshot_seconds": snapshot_seconds,
        }
    )
    return part, producer


def heads(records: list[tuple[bytes | None, bytes | None]]) -> list[dict[str, Any]]:
    return [orjson.loads(v or b"") for k, v in records if k == HEAD_KEY]


def test_a_handover_writes_a_snapshot_of_the_ledger_as_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        # no checkpoint and no periodic snapshot due in this test's time
        part, producer = exactly_once(monkeypatch, 3600, 3600)
        part.feed(recs[:100])
        await worked_through(part, 100)
        part.feed(recs[100:350])
        await worked_through(part, 350)
        await settled(producer, 2)
        assert not any(SNAPSHOTS in txn for txn in producer.transactions)
        before = snapshots_total()
        await part.close()
        assert producer.log[-3:] == ["begin", "commit", "stop"]
        last = producer.transactions[-1]
        assert last["offsets"] == {0: 350}
        records = last[SNAPSHOTS]
        state = part.state
        assert state is not None and state.ledger.ledger_end > 0
        # the snapshot of the ledger as it ended, and the checkpoint of the states with it
        assert [(h["ledger_end"], h["next_offset"]) for h in heads(records)] == [
            (state.ledger.ledger_end, 350)
        ]
        assert checkpoint_of(records) == 350
        loaded = load(records, SETTINGS.dedup_window_days, 0, 0)
        assert loaded is not None
        ledger, writer = loaded
        assert ledger.heads == state.ledger.heads and len(ledger.heads) == 6
        assert ledger.ledger_end == writer.ledger_end == state.ledger.ledger_end
        assert part.snapshots.ledger_end == state.ledger.ledger_end
        assert snapshots_total() == before + 1

    asyncio.run(run())


def test_an_idle_partition_with_every_state_written_still_hands_over_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every state written with its transaction (checkpoints every 0 s): nothing is unwritten
    when the partition closes, but the ledger moved on since the last snapshot (none)."""
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 0, 3600)
        part.feed(recs[:200])
        await worked_through(part, 200)
        await settled(producer, 1)
        assert part.state is not None and not part.state.unwritten_accounts
        assert not part.in_batch
        await part.close()
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]
        last = producer.transactions[-1]
        assert SETTINGS.ledger_topic not in last and last["offsets"] == {0: 200}
        assert [h["next_offset"] for h in heads(last[SNAPSHOTS])] == [200]

    asyncio.run(run())


@pytest.mark.parametrize("checkpoint_seconds", [0, 3600])
def test_a_snapshot_as_current_as_the_ledger_is_not_written_again(
    monkeypatch: pytest.MonkeyPatch, checkpoint_seconds: float
) -> None:
    """Every transaction writes a snapshot here (due after 1 µs): the close finds the last one
    current and writes no second (with unwritten states it commits them alone)."""
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, checkpoint_seconds, 1e-6)
        part.feed(recs[:200])
        await worked_through(part, 200)
        await settled(producer, 1)
        assert heads(producer.transactions[0][SNAPSHOTS])
        assert part.state is not None
        assert part.snapshots.ledger_end == part.state.ledger.ledger_end > 0
        await part.close()
        assert producer.log == ["begin", "commit", "stop"]

    asyncio.run(run())


def test_a_partition_that_wrote_nothing_hands_over_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 3600)
        await asyncio.sleep(0.01)
        await part.close()
        assert producer.log == ["stop"]

    asyncio.run(run())


def test_with_snapshots_off_a_handover_writes_the_states_and_no_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 0)
        part.feed(recs[:200])
        await worked_through(part, 200)
        await settled(producer, 1)
        await part.close()
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]
        last = producer.transactions[-1]
        assert last[SETTINGS.account_state_topic] and not heads(last[SNAPSHOTS])
        assert checkpoint_of(last[SNAPSHOTS]) == 200

    asyncio.run(run())


def test_at_least_once_a_handover_writes_the_snapshot_before_the_source_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, consumer, _ = at_least_once_writer(monkeypatch, commit_min_seconds=0)
        part.service.settings = part.service.settings.model_copy(update={"snapshot_seconds": 3600})
        part.feed(recs[:200])
        await worked_through(part, 200)
        sent = part.producer.sent  # type: ignore[union-attr]
        assert sent.count(SNAPSHOTS) == 1  # the checkpoint record of the states (every 0 s)
        assert consumer.commits == [{part.tp: 200}]
        await part.close()
        # one more round: the checkpoint record, then the snapshot; the offset after both
        assert sent.count(SNAPSHOTS) == 3
        assert sent[-1] == SNAPSHOTS
        assert consumer.commits == [{part.tp: 200}, {part.tp: 200}]
        assert part.state is not None
        assert part.snapshots.ledger_end == part.state.ledger.ledger_end > 0

    asyncio.run(run())
