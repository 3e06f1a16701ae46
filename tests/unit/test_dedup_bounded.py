"""The bounded dedup window (pipeline/dedup_window.py, bounded mode; pipeline/id_filter.py)
decides as the exact one does, with exact ids held only for their first seconds, and its
snapshots (pipeline/ledger_snapshot.py) stand for the state they were made of."""

from __future__ import annotations

import random

import pytest

from pipeline import ledger_snapshot
from pipeline.event import format_ms
from pipeline.id_filter import IdFilter, filter_bits
from pipeline.ledger import LedgerState, id_digest
from pipeline.ledger_snapshot import SnapshotWriter, Unusable

T0 = 1_796_000_000_000  # 2026-11-30
MINUTE = 60_000


def digests(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(n)]


def test_a_filter_never_forgets_an_added_id_and_rarely_claims_others() -> None:
    added, others = digests(20_000, 1), digests(20_000, 2)
    id_filter = IdFilter(1 << 18)  # 13 bits per id
    id_filter.add(added)
    assert id_filter.contains(added).all()
    claimed = float(id_filter.contains(others).mean())
    assert claimed < 0.01
    assert claimed == pytest.approx(id_filter.false_positive_rate(), abs=0.005)
    again = IdFilter.from_bytes(id_filter.to_bytes())
    assert (again.array == id_filter.array).all() and again.count == 20_000
    with pytest.raises(ValueError, match="power of two"):
        IdFilter(1000)
    assert filter_bits(1, 8) == 1 << 20


def event(account: str, event_id: str) -> dict[str, object]:
    return {
        "account_id": account,
        "event_id": event_id,
        "occurred_at": "2026-11-30T00:00:00.000Z",
        "actor": {"type": "seller"},
        "action": "listing.update",
    }


class Warehouse:
    """What the warehouse would hold: every sequenced (account, event_id) with its ingest time,
    stored when the test says the loader got there."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int]] = []
        self.stored = 0

    def seen(self, pairs: list[tuple[str, str]], since_ms: int) -> set[tuple[str, str]]:
        wanted = set(pairs)
        return {
            (a, e) for a, e, ms in self.rows[: self.stored] if (a, e) in wanted and ms >= since_ms
        }


def run_stream(
    stream: list[tuple[int, str, str]], bounded: LedgerState, loader_lag: int
) -> tuple[list[bool], list[bool], int]:
    """Sequence the stream (ingest ms, account, event id) in batches of 50 through an exact
    state and `bounded`, as the ingest service does; the warehouse stores the ledger
    `loader_lag` batches behind. Returns both decision lists and the most ids held exactly."""
    exact = LedgerState(bounded.window)
    warehouse = Warehouse()
    exact_decisions: list[bool] = []
    bounded_decisions: list[bool] = []
    ends: list[int] = []
    most_exact = 0
    for start in range(0, len(stream), 50):
        batch = stream[start : start + 50]
        for ms, account, event_id in batch:
            exact_decisions.append(
                exact.accept(event(account, event_id), format_ms(ms)) is not None
            )
        _, suspects = bounded.prepare([(a, e) for _, a, e in batch], format_ms(batch[0][0]))
        bounded.confirm(warehouse.seen(suspects, bounded.window_start_ms()))
        for ms, account, event_id in batch:
            accepted = bounded.accept(event(account, event_id), format_ms(ms)) is not None
            bounded_decisions.append(accepted)
            if accepted:
                warehouse.rows.append((account, event_id, ms))
        bounded.committed(len(warehouse.rows))  # the ledger's end: one entry per accepted event
        ends.append(len(warehouse.rows))
        if len(ends) > loader_lag:
            warehouse.stored = ends[-1 - loader_lag]
        bounded.seal(warehouse.stored)
        most_exact = max(most_exact, bounded.seen_count())
    return exact_decisions, bounded_decisions, most_exact


def make_stream(n: int, seed: int, per_ms: int = 1000) -> list[tuple[int, str, str]]:
    """Events a second apart (`per_ms`), repeats of recent and of old ids mixed in."""
    rng = random.Random(seed)
    stream: list[tuple[int, str, str]] = []
    for i in range(n):
        ms = T0 + i * per_ms
        roll = rng.random()
        if stream and roll < 0.05:  # a redelivery of a recent event
            _, account, event_id = stream[max(0, len(stream) - rng.randint(1, 30))]
        elif stream and roll < 0.15:  # a repeat from long ago (or a late repeat after the window)
            _, account, event_id = stream[rng.randrange(len(stream))]
        else:
            account, event_id = f"A{rng.randint(1, 20):04d}", f"e-{i}"
        stream.append((ms, account, event_id))
    return stream


@pytest.mark.parametrize("seed", [7, 23])
@pytest.mark.parametrize("loader_lag", [0, 3])
def test_bounded_dedup_decides_as_the_exact_window(seed: int, loader_lag: int) -> None:
    # A 2-hour window (one bucket: a window shorter than a day is its own bucket); at a second
    # per event 6,000 events span 100 minutes; ids are held exactly for 2 minutes (120 events)
    # and then only in the bucket's filter.
    stream = make_stream(6_000, seed)
    bounded = LedgerState(2 / 24, exact_seconds=120, filter_mb=0.25)
    exact_decisions, bounded_decisions, most_exact = run_stream(stream, bounded, loader_lag)
    assert bounded_decisions == exact_decisions
    assert exact_decisions.count(False) > 300  # repeats were there to find
    assert bounded.filter_count() > 4_500
    # Held exactly: about 2 minutes plus the loader's lag and a slot, never the whole window.
    assert most_exact <= 120 + 60 + 50 * (loader_lag + 1) + 60


def test_a_window_shorter_than_the_stream_forgets_in_both_modes() -> None:
    stream = make_stream(4_000, 5)
    bounded = LedgerState(1800 / 86_400, exact_seconds=60, filter_mb=0.25)  # 30 minutes
    exact_decisions, bounded_decisions, _ = run_stream(stream, bounded, 1)
    assert bounded_decisions == exact_decisions
    assert bounded.filters and min(bounded.filters) > (T0 // bounded.bucket_ms)  # swept


def test_exact_ids_stay_until_the_warehouse_holds_them() -> None:
    state = LedgerState(1, exact_seconds=60, filter_mb=1)
    for i in range(10):
        state.accept(event("A1", f"e-{i}"), format_ms(T0 + i * 30_000))
        state.committed(i + 1)
    state.seal(0)  # nothing stored yet: every id stays exact
    assert state.seen_count() == 10 and not state.filters
    state.seal(4)
    assert 0 < state.filter_count() <= 4
    assert state.seen_count() + state.filter_count() == 10
    uncommitted = LedgerState(1, exact_seconds=60, filter_mb=1)
    uncommitted.accept(event("A1", "x"), format_ms(T0))
    uncommitted.accept(event("A1", "y"), format_ms(T0 + 10 * MINUTE))
    uncommitted.seal(10**9)  # taken but not committed: not moved
    assert uncommitted.seen_count() == 2


def exact_tier(state: LedgerState) -> dict[tuple[int, int], set[bytes]]:
    """Every id the exact tier holds, by slot, whether in a set or a sorted run."""
    return {key: state.exact_ids(key) for key in state.exact_keys()}


def bounded_state(n: int, seed: int) -> LedgerState:
    state = LedgerState(2 / 24, exact_seconds=120, filter_mb=0.25)
    run_stream(make_stream(n, seed), state, 1)
    state.next_offset = n
    return state


def test_a_snapshot_loads_as_the_state_it_was_made_of() -> None:
    state = bounded_state(3_000, 11)
    writer = SnapshotWriter()
    records = writer.records(state)
    assert all(len(v or b"") <= ledger_snapshot.CHUNK_BYTES + 8 for _, v in records)
    loaded = ledger_snapshot.load(records, 2 / 24, 120, 0.25)
    assert loaded is not None
    again, _ = loaded
    assert again.heads == state.heads
    assert exact_tier(again) == exact_tier(state) and again.ends == state.ends
    assert again.filters.keys() == state.filters.keys()
    for bucket, id_filter in state.filters.items():
        assert (again.filters[bucket].array == id_filter.array).all()
    assert (again.next_offset, again.ledger_end) == (state.next_offset, state.ledger_end)
    # Going on from either decides the same.
    more = make_stream(600, 12)
    later = [(ms + 3_000 * 1000, a, e) for ms, a, e in more] + make_stream(3_000, 11)[:300]
    for ms, account, event_id in later:
        args = event(account, event_id), format_ms(ms)
        assert (state.accept(*args) is None) == (again.accept(*args) is None)


def test_snapshots_are_incremental_and_the_latest_records_hold_together() -> None:
    state = bounded_state(2_000, 3)
    writer = SnapshotWriter()
    first = writer.records(state)
    heads_first = [k for k, _ in first if k and k.startswith(b"h:")]
    assert len(heads_first) == len(state.heads) == 20
    state.accept(event("A0001", "new-one"), format_ms(T0 + 2_100_000))
    state.committed(state.ledger_end + 1)
    second = writer.records(state)
    assert [k for k, _ in second if k and k.startswith(b"h:")] == [b"h:A0001"]
    assert not any(k and k.startswith(b"f:") for k, _ in second)  # filters unchanged
    loaded = ledger_snapshot.load([*first, *second], 2 / 24, 120, 0.25)
    assert loaded is not None and loaded[0].heads == state.heads
    assert exact_tier(loaded[0]) == exact_tier(state)
    # Without the first snapshot's filter chunks the second does not hold together.
    with pytest.raises(Unusable, match="missing"):
        ledger_snapshot.load(
            [r for r in first if not (r[0] or b"").startswith(b"f:")] + second, 2 / 24, 120, 0.25
        )
    # A chunk of another generation is not taken.
    stale = [
        (k, (v[:7] + bytes([v[7] ^ 1]) + v[8:]) if k == b"x:0" and v else v) for k, v in second
    ]
    with pytest.raises(Unusable, match="generation"):
        ledger_snapshot.load([*first, *stale], 2 / 24, 120, 0.25)
    # Other dedup settings: not used.
    with pytest.raises(Unusable, match="settings"):
        ledger_snapshot.load([*first, *second], 7, 120, 0.25)
    assert ledger_snapshot.load([], 2 / 24, 120, 0.25) is None


def test_a_bucket_that_left_the_window_is_tombstoned() -> None:
    state = LedgerState(1800 / 86_400, exact_seconds=60, filter_mb=0.25)  # 30-minute buckets
    run_stream(make_stream(2_000, 9), state, 0)
    writer = SnapshotWriter()
    first = writer.records(state)
    buckets_before = set(state.filters)
    later = [(T0 + 4 * 3_600_000 + i * 1000, "A0001", f"late-{i}") for i in range(200)]
    run_stream(later, state, 0)
    assert not buckets_before & set(state.filters)
    second = writer.records(state)
    tombstoned = {k for k, v in second if v is None}
    assert tombstoned and all(k.startswith(b"f:") for k in tombstoned)
    loaded = ledger_snapshot.load([*first, *second], 1800 / 86_400, 60, 0.25)
    assert loaded is not None and set(loaded[0].filters) == set(state.filters)


def test_digest_of_an_id_is_what_the_window_keys() -> None:
    # The filter and exact tier agree on what an id is (account and event id, not the event).
    state = LedgerState(1, exact_seconds=1, filter_mb=0.25)
    state.accept(event("A1", "e"), format_ms(T0))
    assert state.has_seen(id_digest("A1", "e")) and not state.has_seen(id_digest("A2", "e"))


def test_a_slot_a_later_batch_took_entries_in_waits_for_that_batch_to_commit() -> None:
    """A partition works on its next batch while the previous one's transaction is in flight
    (streams/ingest_partition.py): the earlier batch committing must not let `seal` move a slot
    holding the later batch's ids, which the warehouse cannot hold yet."""
    state = LedgerState(1, exact_seconds=60, filter_mb=1)
    state.accept(event("A1", "e-1"), format_ms(T0))
    first = state.close_batch()
    state.accept(event("A1", "e-2"), format_ms(T0 + 1_000))  # the same slot, the next batch
    second = state.close_batch()
    state.accept(event("A1", "e-3"), format_ms(T0 + 10 * MINUTE))  # later: the slots age
    state.committed(1, first)
    state.seal(10**9)  # the slot's latest entry is the second batch's, not committed
    assert state.seen_count() == 3 and not state.filters
    assert state.ends == {}
    state.committed(2, second)
    state.seal(1)  # committed, but the warehouse holds the ledger below 1 only
    assert state.seen_count() == 3
    state.seal(2)
    assert state.seen_count() == 1 and state.filter_count() == 2
