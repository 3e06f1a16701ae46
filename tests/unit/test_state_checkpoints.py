"""Detection states written at checkpoints, not with every transaction (streams/ingest_partition.py,
`PW_STATE_CHECKPOINT_SECONDS`), and folded again from the ledger at load
(`PartitionState.fold_entry`).

A transaction between checkpoints writes the ledger entries, dead letters and source offset only;
the states and open alerts its events changed wait (`PartitionState.unwritten_*`) for the next
checkpoint, which writes each of them once, as it is then. A partition with no records writes them
when they are due, and a handover writes them before the partition goes. A load folds the ledger
entries after each account's state into it, so it ends where the ingest service was: the same
states and open alerts as if every transaction had written them.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from pipeline.config import Settings
from pipeline.ledger import LedgerState
from pipeline.ledger_snapshot import SnapshotWriter, checkpoint_of, checkpoint_record, load
from streams import ingest_partition
from streams.ingest_batch import Ingest, PartitionState, state_record
from tests.unit.test_ingest_batch import SETTINGS, Rec
from tests.unit.test_ingest_open_batch import fixed_clock, traffic, worked_through
from tests.unit.test_ingest_overlap import txn_writer

STATES = (
    SETTINGS.account_state_topic,
    SETTINGS.open_alerts_topic,
    SETTINGS.ledger_snapshot_topic,
)


def every(seconds: float, snapshot_seconds: float = 0) -> Settings:
    """Checkpoints every `seconds`, and no ledger snapshots (each would bring a checkpoint)
    unless `snapshot_seconds` says so."""
    return SETTINGS.model_copy(
        update={"state_checkpoint_seconds": seconds, "snapshot_seconds": snapshot_seconds}
    )


def checkpointing(
    monkeypatch: pytest.MonkeyPatch, seconds: float, snapshot_seconds: float = 0
) -> tuple[ingest_partition.PartitionIngest, Any]:
    """A loaded partition writer over fakes (tests/unit/test_ingest_overlap.py `txn_writer`),
    writing its states every `seconds` (and ledger snapshots every `snapshot_seconds`, 0:
    never); and its producer."""
    part, producer, _, _ = txn_writer(monkeypatch)
    part.service.settings = every(seconds, snapshot_seconds)
    return part, producer


def reference(recs: list[Rec]) -> tuple[PartitionState, dict[str, Any]]:
    """`recs` worked through in one state (batches as the writer cuts them do not change what
    the states end as); and every alert change, the latest per alert id."""
    ingest, state = Ingest(SETTINGS), PartitionState(0, SETTINGS.dedup_window_days)
    out = ingest.batch(state, recs)
    return state, out.alert_changes


def decoded(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, Any]:
    return {orjson.loads(k or b'""'): None if v is None else orjson.loads(v) for k, v in records}


async def settled(producer: Any, count: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while producer.log.count("commit") < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} commits expected, {producer.log}")
        await asyncio.sleep(0.005)


def test_transactions_between_checkpoints_write_no_states_and_a_handover_writes_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()
    state, changes = reference(recs[:350])
    assert changes  # alerts opened (the mix closes none this soon)

    async def run() -> None:
        part, producer = checkpointing(monkeypatch, 3600)
        part.feed(recs[:100])
        await worked_through(part, 100)
        part.feed(recs[100:350])
        await worked_through(part, 350)
        await settled(producer, 2)
        for txn in producer.transactions:  # ledger entries and offsets, no states
            assert txn[SETTINGS.ledger_topic] and not any(t in txn for t in STATES)
        assert part.state is not None and part.state.unwritten_accounts
        await part.close()
        assert producer.log.count("commit") == 3
        last = producer.transactions[-1]
        assert SETTINGS.ledger_topic not in last and last["offsets"] == {0: 350}
        assert last[SETTINGS.ledger_snapshot_topic] == [checkpoint_record(350)]
        # each changed state once, as it ended; each changed alert's latest version
        assert decoded(last[SETTINGS.account_state_topic]) == decoded(
            [state_record(k, v) for k, v in state.accounts.items()]
        )
        assert decoded(last[SETTINGS.open_alerts_topic]) == decoded(
            [state_record(k, v) for k, v in changes.items()]
        )

    asyncio.run(run())


class Clock:
    """`time.monotonic` for streams/ingest_partition.py alone, moved on by hand (the event loop
    keeps its own): a checkpoint is due when the test says so."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, part: ingest_partition.PartitionIngest
    ) -> None:
        self.now = 1_000.0
        monkeypatch.setattr(ingest_partition, "time", SimpleNamespace(monotonic=lambda: self.now))
        part._checkpoint_at = self.now  # the interval starts now on this clock


def test_an_idle_partition_writes_its_states_when_they_are_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, producer = checkpointing(monkeypatch, 1.0)
        clock = Clock(monkeypatch, part)
        part.feed(recs[:100])
        await settled(producer, 1)
        assert not any(t in producer.transactions[0] for t in STATES)
        clock.now += 0.5
        part._wake.set()
        await asyncio.sleep(0.05)
        assert not part._wake.is_set()  # the loop woke and looked
        assert producer.log.count("begin") == 1  # not due yet
        clock.now += 0.5
        part._wake.set()  # (the loop's own wait would end within the second)
        await settled(producer, 2)  # no more records: the states alone, once due
        alone = producer.transactions[1]
        assert SETTINGS.ledger_topic not in alone and alone[SETTINGS.account_state_topic]
        assert alone["offsets"] == {0: 100}
        assert checkpoint_of(alone[SETTINGS.ledger_snapshot_topic]) == 100
        assert part.state is not None and not part.state.unwritten_accounts
        clock.now += 5
        part._wake.set()
        await asyncio.sleep(0.05)  # nothing changed since: no more transactions
        assert not part._wake.is_set()
        assert producer.log.count("begin") == 2
        await part.close()
        assert producer.log.count("begin") == 2

    asyncio.run(run())


def test_a_transaction_of_the_states_alone_leaves_the_state_check_to_the_first_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a load that folded entries, an idle partition writes them before any batch ran
    the state check (streams/state_repair.py): the check still runs at the first batch."""
    fixed_clock(monkeypatch)
    recs = traffic()
    checks: list[int] = []

    async def check_partition(state: PartitionState) -> Any:
        checks.append(len(state.accounts))
        return await real_check(state)

    real_check = ingest_partition.state_repair.check_partition
    monkeypatch.setattr(ingest_partition.state_repair, "check_partition", check_partition)

    async def run() -> None:
        part, producer = checkpointing(monkeypatch, 1.0)
        clock = Clock(monkeypatch, part)
        assert part.state is not None
        live = PartitionState(0, SETTINGS.dedup_window_days)
        out = Ingest(SETTINGS).batch(live, recs[:100])
        for _, value in out.ledger:  # as a load folds the ledger after a checkpoint
            part.state.load_ledger(value, SETTINGS.detect, None, 0)
        part.state.ledger.next_offset = out.next_offset
        part.checked = False
        clock.now += 1
        part._wake.set()
        await settled(producer, 1)
        assert producer.transactions[0][SETTINGS.account_state_topic]
        assert not part.checked and checks == []
        part.feed(recs[100:200])
        await settled(producer, 2)
        assert part.checked and len(checks) == 1
        await part.close()

    asyncio.run(run())


def test_a_checkpoint_record_is_read_back_and_a_snapshot_ignores_it() -> None:
    record = checkpoint_record(1234)
    others = [(b"head", b"{}"), (b"h:acct", b"3 abc")]
    assert checkpoint_of([]) is None and checkpoint_of(others) is None
    assert checkpoint_of([checkpoint_record(7), *others, record]) == 1234  # the latest
    for bad in (b"", b"[]", b"{}", b'{"v": 1}', b'{"v": 99, "next_offset": 5}', b"\xff", None):
        assert checkpoint_of([(record[0], bad)]) is None, bad
    state = LedgerState(7)
    writer = SnapshotWriter()
    snapshot = writer.records(state)
    # a snapshot load that refused keys it does not know would refuse every snapshot now
    assert load([*snapshot, record], 7, 0, 0) is not None


def test_with_checkpoints_off_every_transaction_writes_its_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()

    async def run() -> None:
        part, producer = checkpointing(monkeypatch, 0)
        part.feed(recs[:100])
        await settled(producer, 1)
        part.feed(recs[100:200])
        await settled(producer, 2)
        assert all(t[SETTINGS.account_state_topic] for t in producer.transactions)
        await part.close()
        assert producer.log.count("begin") == 2

    asyncio.run(run())


def changelog(state: PartitionState, changes: dict[str, Any]) -> PartitionState:
    """A new partition state loaded from the state records a checkpoint of `state` writes."""
    loaded = PartitionState(0, SETTINGS.dedup_window_days)
    for key, value in (state_record(k, v) for k, v in state.accounts.items()):
        loaded.load_account(key, value)
    for key, value in (state_record(k, v) for k, v in changes.items()):
        loaded.load_alert(key, value)
    return loaded


@pytest.mark.parametrize("mark", ["at", "older"])
def test_a_load_folds_the_ledger_after_the_checkpoint_into_the_same_states(
    monkeypatch: pytest.MonkeyPatch, mark: str
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()
    ingest, live = Ingest(SETTINGS), PartitionState(0, SETTINGS.dedup_window_days)
    first = ingest.batch(live, recs[:300])
    loaded = changelog(live, first.alert_changes)  # the states as of offset 300
    second = ingest.batch(live, recs[300:])
    assert second.alerts, "the mix raises alerts after the checkpoint"
    # the checkpoint's mark, or an older one (the states hold more than it says: at least
    # once, the states written and the mark not): either way the states' own entries are skipped
    fold_from = first.next_offset if mark == "at" else 100
    folded = [
        loaded.load_ledger(value, SETTINGS.detect, None, fold_from)
        for _, value in first.ledger + second.ledger
    ]
    assert folded == [False] * len(first.ledger) + [True] * len(second.ledger)
    roundtrip = changelog(live, {**first.alert_changes, **second.alert_changes})
    assert loaded.accounts == roundtrip.accounts
    assert loaded.open_alerts == roundtrip.open_alerts
    # what was folded is what the next checkpoint writes
    assert set(loaded.unwritten_accounts) == {
        orjson.loads(k or b"") for k, _ in second.account_records()
    }
    assert decoded([state_record(k, v) for k, v in loaded.unwritten_alerts.items()]) == decoded(
        second.alert_records()
    )
    assert loaded.ledger.heads == live.ledger.heads


def test_without_a_checkpoint_mark_a_load_folds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mark (states written before checkpoints, or the snapshot topic lost): the states stay
    as the state topics hold them, and the state check finds any that are behind."""
    fixed_clock(monkeypatch)
    recs = traffic()
    ingest, live = Ingest(SETTINGS), PartitionState(0, SETTINGS.dedup_window_days)
    first = ingest.batch(live, recs[:300])
    loaded = changelog(live, first.alert_changes)
    before = orjson.dumps(loaded.accounts)
    second = ingest.batch(live, recs[300:])
    for _, value in first.ledger + second.ledger:
        assert not loaded.load_ledger(value, SETTINGS.detect, None, None)
    assert orjson.dumps(loaded.accounts) == before and not loaded.unwritten_accounts
    assert loaded.ledger.heads == live.ledger.heads
    # a mark past every entry folds nothing either
    for _, value in second.ledger:
        assert not loaded.load_ledger(value, SETTINGS.detect, None, second.next_offset)


def test_a_load_does_not_fold_into_a_state_with_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()
    ingest, live = Ingest(SETTINGS), PartitionState(0, SETTINGS.dedup_window_days)
    first = ingest.batch(live, recs[:300])
    loaded = changelog(live, first.alert_changes)
    second = ingest.batch(live, recs[300:])
    entries = [orjson.loads(v or b"") for _, v in second.ledger]
    account = next(e["account_id"] for e in entries if e["account_id"] in loaded.accounts)
    gone = next(i for i, e in enumerate(entries) if e["account_id"] == account)
    before = orjson.dumps(loaded.accounts[account])
    # the ledger lost the account's first entry after the checkpoint: the rest do not fit
    for i, (_, value) in enumerate(second.ledger):
        if i != gone:
            loaded.load_ledger(value, SETTINGS.detect, None, 0)
    assert orjson.dumps(loaded.accounts[account]) == before  # left for the state check
    assert account not in loaded.unwritten_accounts
    assert loaded.unwritten_accounts  # the other accounts were folded
    # an account without a state whose entries start past seq 1 is left alone too
    fresh = PartitionState(0, SETTINGS.dedup_window_days)
    for _, value in second.ledger:
        fresh.load_ledger(value, SETTINGS.detect, None, 0)
    starts: dict[str, int] = {}
    for e in entries:
        starts.setdefault(e["account_id"], e["seq"])
    late = {a for a, seq in starts.items() if seq > 1}
    assert late and not late & set(fresh.accounts)
    assert {a for a, seq in starts.items() if seq == 1} <= set(fresh.accounts)
