"""The compact exact tier of the dedup window (pipeline/id_runs.py, pipeline/dedup_window.py
`prepare`): sorted runs of 16-byte digests hold exactly what the sets held, the window decides
with them as it did with sets only, and a ledger snapshot written before runs existed loads."""

from __future__ import annotations

import itertools
import json
import random
import struct
from pathlib import Path

import orjson
import pytest

from pipeline import dedup_window, ledger_snapshot
from pipeline.config import Settings
from pipeline.event import format_ms
from pipeline.id_runs import IdRun, any_holds, halves_of
from pipeline.ledger import LedgerState, id_digest
from pipeline.ledger_snapshot import SnapshotWriter
from pipeline.simulation.traffic import generate
from streams.ingest_batch import Ingest, PartitionState
from tests.unit.test_dedup_bounded import T0, event, exact_tier, make_stream, run_stream
from tests.unit.test_ingest_batch import Rec

FIXTURE = Path(__file__).parent / "fixtures" / "ledger_snapshot_v1.json"


def digests(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(n)]


def test_a_run_holds_exactly_its_digests() -> None:
    held, others = digests(5_000, 1), digests(5_000, 2)
    # Digests that share their first 8 bytes, and ones that differ from a held one only in
    # their last byte or first byte: the whole 16 bytes decide.
    twins = [b"\x07" * 8 + bytes([i]) * 8 for i in range(12)]
    held += [*twins[::2], b"\x00" * 16, b"\xff" * 16]
    others += twins[1::2] + [d[:15] + bytes([d[15] ^ 1]) for d in held[:500]]
    others += [bytes([d[0] ^ 0x80]) + d[1:] for d in held[:500]]
    run = IdRun.of(set(held))
    assert len(run) == len(held) and run.nbytes == 16 * len(held)
    assert run.contains(halves_of(held)).all()
    assert not run.contains(halves_of(others)).any()
    assert sorted(run.digests()) == sorted(held)
    assert IdRun.from_bytes(run.to_bytes()).digests() == run.digests()
    # Split and merged, or looked up as several runs: the same answers.
    parts = [IdRun.of(held[i::3]) for i in range(3)]
    merged = IdRun.merged(parts)
    assert (merged.hi[1:] >= merged.hi[:-1]).all()
    assert merged.contains(halves_of(held)).all()
    assert not merged.contains(halves_of(others)).any()
    mixed = held[::7] + others[::7]
    assert any_holds(parts, halves_of(mixed)) == [d in set(held) for d in mixed]
    assert IdRun.of([]).contains(halves_of(held[:3])).tolist() == [False] * 3


def prepared_exact_decisions(
    stream: list[tuple[int, str, str]], state: LedgerState, batch: int = 50
) -> list[bool]:
    """Sequence the stream in batches as the ingest service does (`prepare` first)."""
    decisions: list[bool] = []
    for start in range(0, len(stream), batch):
        part = stream[start : start + batch]
        assert not state.prepare([(a, e) for _, a, e in part], format_ms(part[0][0]))[1]
        for ms, account, event_id in part:
            decisions.append(state.accept(event(account, event_id), format_ms(ms)) is not None)
        state.committed(len(decisions))
        assert sum(len(ids) for ids in state.exact.values()) <= dedup_window.RUN_IDS + batch
        # each of a slot's runs holds over twice the next (each at least RUN_IDS): a few
        for runs in state.runs.values():
            assert all(len(a) > 2 * len(b) for a, b in itertools.pairwise(runs))
            assert len(runs) <= (len(decisions) // dedup_window.RUN_IDS).bit_length()
    return decisions


@pytest.mark.parametrize("seed", [7, 23])
def test_the_compacted_window_decides_as_sets_do(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small runs, so that a slot still written holds several (merged as it grows).
    monkeypatch.setattr(dedup_window, "RUN_IDS", 16)
    stream = make_stream(6_000, seed, per_ms=500)
    sets_only = LedgerState(2 / 24)
    expected = [sets_only.accept(event(a, e), format_ms(ms)) is not None for ms, a, e in stream]
    assert expected.count(False) > 300
    compacted = LedgerState(2 / 24)
    assert prepared_exact_decisions(stream, compacted) == expected
    assert len(compacted.runs) == 1 and compacted.seen_count() == expected.count(True)
    assert exact_tier(compacted) == exact_tier(sets_only)
    # Bounded: sets, runs and filters together decide as the exact window (loader lagging too).
    for lag in (0, 3):
        bounded = LedgerState(2 / 24, exact_seconds=120, filter_mb=0.25)
        exact_decisions, bounded_decisions, _ = run_stream(stream, bounded, lag)
        assert bounded_decisions == exact_decisions == expected
        assert bounded.runs


def test_a_day_swept_in_the_middle_of_a_batch_is_forgotten_by_its_runs_too() -> None:
    # A two-day window: days 0 and 1 are compacted when day 2's batch is prepared, and that
    # batch runs into day 3, which sweeps day 0: an id of day 0 then comes back as a late
    # repeat (a new entry), while day 1's ids are still repeats.
    day = 86_400_000
    earlier = [(T0 + i, "A1", f"e-{i}") for i in range(5)]
    earlier += [(T0 + day + i, "A1", f"d-{i}") for i in range(5)]
    batch = [
        (T0 + 2 * day + 1, "A1", "e-0"),
        (T0 + 3 * day + 1, "A1", "e-new"),
        (T0 + 3 * day + 2, "A1", "e-1"),
        (T0 + 3 * day + 3, "A1", "d-1"),
    ]
    decisions = []
    for prepared in (False, True):
        state = LedgerState(2)
        for part in (earlier[:5], earlier[5:], batch):
            if prepared:
                state.prepare([(a, e) for _, a, e in part], format_ms(part[0][0]))
            if part is batch:
                # prepared: both days compacted (not prepared: sets only, as replays keep them)
                assert (not state.exact and len(state.runs) == 2) if prepared else not state.runs
                decisions.append(
                    [state.accept(event(a, e), format_ms(ms)) is not None for ms, a, e in part]
                )
            else:
                for ms, a, e in part:
                    state.accept(event(a, e), format_ms(ms))
    assert decisions[0] == decisions[1] == [False, True, True, False]


def test_a_recovery_compacts_as_it_reads() -> None:
    live = LedgerState(7)
    entries = [live.accept(event("A1", f"e-{i}"), format_ms(T0 + i)) for i in range(3 * 16_384 + 5)]
    recovered = LedgerState(7)
    for entry in entries:
        assert entry is not None
        recovered.observe(entry)
    assert sum(len(r) for r in recovered.runs[(T0 // 86_400_000,) * 2]) == 3 * 16_384
    assert recovered.seen_count() == len(entries)
    assert recovered.has_seen(id_digest("A1", "e-0")) and recovered.has_seen(
        id_digest("A1", "e-49156")
    )
    assert not recovered.has_seen(id_digest("A2", "e-0"))


def _old_exact_section(data: bytes) -> dict[tuple[int, int], tuple[int, set[bytes]]]:
    """The exact tier's section as the loader before runs read it (its `_load_exact`)."""
    slot = struct.Struct(">qqqI")
    out: dict[tuple[int, int], tuple[int, set[bytes]]] = {}
    at = 0
    while at < len(data):
        bucket, key_slot, end, count = slot.unpack_from(data, at)
        at += slot.size
        out[(bucket, key_slot)] = (end, {data[i : i + 16] for i in range(at, at + 16 * count, 16)})
        at += 16 * count
    return out


@pytest.mark.parametrize("mode", ["bounded", "exact"])
def test_a_snapshot_written_before_runs_loads_and_decides_the_same(mode: str) -> None:
    """tests/unit/fixtures/ledger_snapshot_v1.json: snapshots written by the sets-only window
    (main at 24634d0, tests/unit/fixtures/make_ledger_snapshot_v1.py), with the ids sequenced
    into them and what the state held."""
    fixture = json.loads(FIXTURE.read_text())[mode]
    records = [
        (bytes.fromhex(k) if k else None, bytes.fromhex(v) if v else None)
        for k, v in fixture["records"]
    ]
    days, exact_seconds, filter_mb = fixture["args"]
    loaded = ledger_snapshot.load(records, days, exact_seconds, filter_mb)
    assert loaded is not None
    state, writer = loaded
    held = sorted(
        f"{k[0]} {k[1]} {state.ends.get(k, -1)} {len(state.exact_ids(k))}"
        for k in state.exact_keys()
    )
    assert held == fixture["exact"]
    assert (state.seen_count(), state.filter_count()) == (
        fixture["exact_ids"],
        fixture["filter_ids"],
    )
    assert (state.ledger_end, state.next_offset) == (fixture["ledger_end"], fixture["next_offset"])
    ids = [tuple(pair) for pair in fixture["ids"]]
    in_exact = [state.has_seen(id_digest(a, e)) for a, e in ids]
    assert sum(in_exact) == fixture["exact_ids"]
    assert not state.has_seen(id_digest("A0000", "never-sent"))
    # The next batch: every id again (held exactly, or in a filter and so a suspect the
    # warehouse confirms), and new ones.
    last_ms = fixture["now_ms"]
    again = [*ids, ("A0000", "new-1"), ("A0001", "new-2")]
    _, suspects = state.prepare(again, format_ms(last_ms))
    assert sorted(suspects) == sorted(p for p, x in zip(ids, in_exact, strict=True) if not x)
    state.confirm(suspects)
    accepted = [state.accept(event(a, e), format_ms(last_ms)) is not None for a, e in again]
    assert accepted == [False] * len(ids) + [True, True]
    # What this state writes reads back, by the old reader too, as the ids it holds.
    again_records = writer.records(state)
    section = b"".join(v[8:] for k, v in again_records if k and k.startswith(b"x:") and v)
    old_view = _old_exact_section(section)
    assert {k: ids for k, (_, ids) in old_view.items()} == exact_tier(state)
    assert {k: end for k, (end, _) in old_view.items() if end >= 0} == state.ends


def test_a_snapshot_of_runs_and_sets_loads_as_the_same_ids() -> None:
    state = LedgerState(2 / 24, exact_seconds=120, filter_mb=0.25)
    run_stream(make_stream(2_000, 4), state, 2)
    later = format_ms(T0 + 2_100_000)  # a later slot: the ones before are compacted
    state.prepare([("A0001", "in-a-set")], later)
    state.accept(event("A0001", "in-a-set"), later)
    assert state.runs and state.exact
    loaded = ledger_snapshot.load(SnapshotWriter().records(state), 2 / 24, 120, 0.25)
    assert loaded is not None
    assert exact_tier(loaded[0]) == exact_tier(state) and loaded[0].ends == state.ends
    assert loaded[0].seen_count() == state.seen_count()


def test_the_ingest_service_and_a_recovery_agree_on_what_was_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Ingest.decode` hashes each id once (`prepare`) and `finish` sequences with those
    digests: a state rebuilt from the ledger it wrote (`observe`) knows the same ids."""
    monkeypatch.setattr(dedup_window, "RUN_IDS", 64)
    settings = Settings.from_env({})
    events = [e for e, _ in generate(600, seed=3)]
    ingest, live = Ingest(settings), PartitionState(0, 7)
    first = ingest.batch(
        live, [Rec(e["account_id"].encode(), orjson.dumps(e), i) for i, e in enumerate(events)]
    )
    assert first.accepted == 600
    recovered = PartitionState(0, 7)
    for _, value in first.ledger:
        recovered.load_ledger(value)
    assert recovered.ledger.runs and recovered.ledger.seen_count() == 600
    again = [Rec(e["account_id"].encode(), orjson.dumps(e), 600 + i) for i, e in enumerate(events)]
    for state in (live, recovered):
        second = ingest.batch(state, [*again[:300], *again[300:]])
        assert (second.accepted, second.duplicates) == (0, 600)
