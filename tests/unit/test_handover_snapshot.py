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
from tests.unit.test_state_checkpoints import checkpointing, settled

SNAPSHOTS = SETTINGS.ledger_snapshot_topic


def snapshots_total() -> float:
    return REGISTRY.get_sample_value("pw_ledger_snapshots_total") or 0.0


def exactly_once(
    monkeypatch: pytest.MonkeyPatch, checkpoint_seconds: float, snapshot_seconds: float
) -> tuple[ingest_partition.PartitionIngest, Any]:
    """A loaded partition writer over fakes (tests/unit/test_state_checkpoints.py
    `checkpointing`), one ingest time for every record (`fixed_clock`)."""
    fixed_clock(monkeypatch)
    return checkpointing(monkeypatch, checkpoint_seconds, snapshot_seconds)


async def worked(
    part: ingest_partition.PartitionIngest, recs: list[Any], start: int, end: int
) -> None:
    """`recs[start:end]` fed to the writer, and worked on."""
    part.feed(recs[start:end])
    await worked_through(part, end)


def heads(records: list[tuple[bytes | None, bytes | None]]) -> list[dict[str, Any]]:
    return [orjson.loads(v or b"") for k, v in records if k == HEAD_KEY]


def test_a_handover_writes_a_snapshot_of_the_ledger_as_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        # no checkpoint and no periodic snapshot due in this test's time
        part, producer = exactly_once(monkeypatch, 3600, 3600)
        await worked(part, recs, 0, 100)
        await worked(part, recs, 100, 350)
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
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 0, 3600)
        await worked(part, recs, 0, 200)
        await settled(producer, 1)
        assert part.state is not None and not part.state.unwritten_accounts
        assert not part.in_batch
        await part.close()
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]
        last = producer.transactions[-1]
        assert SETTINGS.ledger_topic not in last and last["offsets"] == {0: 200}
        assert [h["next_offset"] for h in heads(last[SNAPSHOTS])] == [200]

    asyncio.run(run())


def test_a_snapshot_as_current_as_the_ledger_is_not_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every transaction writes a snapshot here (due after 1 µs, and a snapshot always brings
    the states): the close finds the last one current and nothing unwritten, and writes none."""
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 1e-6)
        await worked(part, recs, 0, 200)
        await settled(producer, 1)
        assert heads(producer.transactions[0][SNAPSHOTS])
        assert part.state is not None and not part.state.unwritten_accounts
        assert part.snapshots.ledger_end == part.state.ledger.ledger_end > 0
        await part.close()
        assert producer.log == ["begin", "commit", "stop"]

    asyncio.run(run())


def test_the_last_batch_and_its_snapshot_go_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records worked on into a batch not yet due commit with the close, and the snapshot in
    that transaction covers them (the ledger's end after them)."""
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 3600)
        monkeypatch.setattr(ingest_partition, "COMMIT_MIN_SECONDS", 3600)  # never due
        part._committed_at = ingest_partition.time.monotonic()
        await worked(part, recs, 0, 150)
        assert producer.log == [] and part.open is not None
        await part.close()
        assert producer.log == ["begin", "commit", "stop"]
        (txn,) = producer.transactions
        state = part.state
        assert state is not None
        assert len(txn[SETTINGS.ledger_topic]) == state.ledger.ledger_end > 0
        assert [(h["ledger_end"], h["next_offset"]) for h in heads(txn[SNAPSHOTS])] == [
            (state.ledger.ledger_end, 150)
        ]

    asyncio.run(run())


def test_a_close_waits_for_the_transaction_in_flight_then_snapshots_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 3600)
        producer.gate.clear()  # the first transaction waits at its start
        await worked(part, recs, 0, 100)
        await worked(part, recs, 100, 250)  # worked on into the next batch meanwhile
        assert producer.log == ["begin"] and part._flight is not None
        closing = asyncio.ensure_future(part.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
        producer.gate.set()
        await closing
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]
        first, last = producer.transactions
        assert SNAPSHOTS not in first
        state = part.state
        assert state is not None
        assert len(first[SETTINGS.ledger_topic]) + len(last[SETTINGS.ledger_topic]) == (
            state.ledger.ledger_end
        )
        assert [(h["ledger_end"], h["next_offset"]) for h in heads(last[SNAPSHOTS])] == [
            (state.ledger.ledger_end, 250)
        ]

    asyncio.run(run())


def test_a_snapshot_alone_is_given_up_when_the_broker_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every state written, only the snapshot to hand over, and the transaction never starts:
    the close gives it up after `HANDOVER_SNAPSHOT_SECONDS` (aborted; the next owner reads the
    ledger after the last snapshot) instead of holding a stop or a rebalance."""
    recs = traffic()
    monkeypatch.setattr(ingest_partition, "HANDOVER_SNAPSHOT_SECONDS", 0.2)

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 0, 3600)
        await worked(part, recs, 0, 100)
        await settled(producer, 1)
        assert part._stale_snapshot() and not part._unwritten() and not part.in_batch
        producer.gate.clear()
        await asyncio.wait_for(part.close(), 5)
        # given up while its start waited (not begun on the broker: nothing to abort; the
        # next owner's producer would fence it in any case)
        assert producer.log == ["begin", "commit", "begin", "stop"]
        assert part._task is not None and part._task.done()

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
    recs = traffic()

    async def run() -> None:
        part, producer = exactly_once(monkeypatch, 3600, 0)
        await worked(part, recs, 0, 200)
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
        sent = part.producer.sent  # type: ignore[union-attr]
        commit = consumer.commit

        async def logged(offsets: dict[Any, int]) -> None:  # one log: sends and the commit
            sent.append(f"commit {offsets[part.tp]}")
            await commit(offsets)

        consumer.commit = logged  # type: ignore[method-assign]
        await worked(part, recs, 0, 200)
        # the ledger, dead letters, states and their checkpoint record (every 0 s), the offset
        assert sent.count(SNAPSHOTS) == 1 and sent[-1] == "commit 200"
        first = len(sent)
        await part.close()
        # one more round: the states' checkpoint record, then the snapshot, then the offset
        last = sent[first:]
        assert last.count(SNAPSHOTS) == 2 and last[-2:] == [SNAPSHOTS, "commit 200"]
        assert SETTINGS.ledger_topic not in last
        assert consumer.commits == [{part.tp: 200}, {part.tp: 200}]
        assert part.state is not None
        assert part.snapshots.ledger_end == part.state.ledger.ledger_end > 0

    asyncio.run(run())
