"""The per-account hash chain: building it, verifying it, and the sequencing state behind it."""

from __future__ import annotations

import sys
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.event import Event, canonical, format_ms, normalize
from pipeline.ledger import (
    GENESIS,
    LEDGER_FIELDS,
    ChainHead,
    LedgerState,
    append,
    encode_entry,
    entry_event,
    entry_hash,
    epoch_day,
    event_of,
    id_digest,
    verify,
    verify_stored,
)

DAY_MS = 86_400_000
T0 = 1_793_000_000_000  # 2026-10-25, a fixed ingest clock


def make_event(i: int, account: str = "A0001SELLER", event_id: str | None = None) -> Event:
    return normalize(
        {
            "event_id": event_id or f"gw-{i:06d}",
            "occurred_at": format_ms(T0 - 5000 + i * 1000),
            "account_id": account,
            "marketplace": "DE",
            "actor": {
                "type": "provider",
                "provider_id": "prov-003",
                "principal_id": "prov-003-user-1",
            },
            "source": {"ip": "185.12.40.7"},
            "action": "listing.price_change",
            "changes": [{"field": "price", "old": "19.99", "new": f"{10 + i}.49"}],
        }
    )


def ingested(i: int, day: int = 0) -> str:
    return format_ms(T0 + day * DAY_MS + i * 7)


def build_chain(n: int) -> list[dict[str, Any]]:
    head = ChainHead()
    entries = []
    for i in range(1, n + 1):
        entry, head = append(head, make_event(i), ingested(i))
        entries.append(entry)
    return entries


def rows_of(entries: list[dict[str, Any]]) -> list[tuple[int, str, str, str, str, bytes]]:
    """Rows as `verify` takes them: the stored payload is the canonical event."""
    return [
        (
            e["seq"],
            e["event_id"],
            e["prev_hash"],
            e["hash"],
            e["ingested_at"],
            canonical(event_of(e)),
        )
        for e in entries
    ]


def test_append_builds_a_chain_from_seq_1() -> None:
    entries = build_chain(5)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev_hash"] == GENESIS == "0" * 64
    for before, after in pairwise(entries):
        assert after["prev_hash"] == before["hash"]
    for e in entries:
        assert set(LEDGER_FIELDS) - {"ingest_offset"} <= e.keys()  # the offset is set by ingest
        assert e["hash"] == entry_hash(
            e["prev_hash"], e["seq"], e["ingested_at"], canonical(event_of(e))
        )
        assert len(e["hash"]) == 64
    assert verify(rows_of(entries)) is None


def test_append_does_not_touch_the_event() -> None:
    event = make_event(1)
    before = dict(event)
    entry, head = append(ChainHead(), event, ingested(1))
    assert event == before
    assert event_of(entry) == event
    assert head == ChainHead(1, entry["hash"])


def test_entry_event_is_the_event_in_a_table_for_strings() -> None:
    """The provider stage's parse (`entry_event(record)`) gives `event_of(orjson.loads(record))`,
    keys in order, in a dict whose table is for strings only: orjson 3.13's dict of an entry
    (eleven keys or more) is presized for keys of any type, 24 bytes an entry where a table for
    strings of the same size takes 16, which `sys.getsizeof` shows."""
    for n in range(1, 6):
        entry, _ = append(ChainHead(), make_event(n), ingested(n))
        entry["ingest_offset"] = n
        record = encode_entry(entry)
        parsed = orjson.loads(record)
        assert len(parsed) >= 11
        event = entry_event(record)
        assert event == event_of(parsed)
        assert list(event) == [k for k in parsed if k not in LEDGER_FIELDS]
        # the same keys put in one by one, less the same fields: a table for strings, as big
        built = {}
        for key, value in parsed.items():
            built[key] = value
        for name in LEDGER_FIELDS:
            built.pop(name, None)
        assert sys.getsizeof(event) == sys.getsizeof(built)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), JSON_VALUES, max_size=14), st.integers(0, 2**53))
def test_entry_event_reads_what_orjson_reads(extra: dict[str, Any], seq: int) -> None:
    """Any JSON ingest can write (integers within `MAX_INT`, any floats, escapes, non-ASCII and
    control characters, nesting): the same values, the same key order, as orjson's."""
    record = orjson.dumps({**extra, "seq": seq, "hash": "0" * 64})
    assert entry_event(record) == event_of(orjson.loads(record))
    assert list(entry_event(record)) == list(event_of(orjson.loads(record)))


def test_hash_covers_every_input() -> None:
    payload = canonical(make_event(1))
    base = entry_hash(GENESIS, 1, ingested(1), payload)
    assert entry_hash("1" * 64, 1, ingested(1), payload) != base
    assert entry_hash(GENESIS, 2, ingested(1), payload) != base
    assert entry_hash(GENESIS, 1, ingested(2), payload) != base
    assert entry_hash(GENESIS, 1, ingested(1), payload + b" ") != base


def test_empty_chain_verifies() -> None:
    assert verify([]) is None


def test_tampered_payload_is_reported_at_its_seq() -> None:
    entries = build_chain(6)
    rows = rows_of(entries)
    tampered = dict(event_of(entries[3]))
    tampered["changes"] = [{"field": "price", "old": "19.99", "new": "0.01"}]
    rows[3] = (*rows[3][:5], canonical(tampered))
    found = verify(rows)
    assert found is not None
    assert (found.seq, found.event_id) == (4, entries[3]["event_id"])
    assert "hash" in found.problem


def test_gap_is_reported_at_the_row_after_it() -> None:
    entries = build_chain(6)
    rows = rows_of(entries)
    del rows[2]  # seq 3 lost
    found = verify(rows)
    assert found is not None
    assert (found.seq, found.event_id) == (4, entries[3]["event_id"])
    assert found.problem.startswith("gap")
    assert "expected seq 3" in found.problem


def test_repeat_is_reported() -> None:
    entries = build_chain(6)
    rows = rows_of(entries)
    rows.insert(3, rows[2])  # seq 3 twice
    found = verify(rows)
    assert found is not None
    assert (found.seq, found.event_id) == (3, entries[2]["event_id"])
    assert found.problem.startswith("repeat")


def test_wrong_prev_hash_is_reported() -> None:
    entries = build_chain(6)
    rows = rows_of(entries)
    seq, event_id, _, _, at, payload = rows[4]
    forged_prev = "f" * 64
    # Even with a hash that is right for the forged link, the link itself is wrong.
    rows[4] = (seq, event_id, forged_prev, entry_hash(forged_prev, seq, at, payload), at, payload)
    found = verify(rows)
    assert found is not None
    assert (found.seq, found.event_id) == (5, entries[4]["event_id"])
    assert "prev_hash" in found.problem


def test_reordered_rows_are_reported() -> None:
    rows = rows_of(build_chain(4))
    rows[1], rows[2] = rows[2], rows[1]
    found = verify(rows)
    assert found is not None and found.seq == 3


def test_first_row_must_be_seq_1_from_genesis() -> None:
    rows = rows_of(build_chain(4))
    found = verify(rows[1:])
    assert found is not None and found.seq == 2 and found.problem.startswith("gap")


def test_verify_from_a_known_head() -> None:
    entries = build_chain(6)
    start = ChainHead(entries[2]["seq"], entries[2]["hash"])
    assert verify(rows_of(entries)[3:], start=start) is None
    assert verify(rows_of(entries)[3:], start=ChainHead(3, "0" * 64)) is not None


def test_chain_head_round_trips_through_json() -> None:
    head = ChainHead(7, "a" * 64)
    assert ChainHead.from_json(orjson.loads(orjson.dumps(head.to_json()))) == head
    assert ChainHead.from_json(None) == ChainHead()
    assert ChainHead.from_json([]) == ChainHead()


# -- LedgerState --------------------------------------------------------------------------------


def test_state_sequences_each_account_separately() -> None:
    state = LedgerState(dedup_window_days=7)
    a1 = state.accept(make_event(1, "A1"), ingested(1))
    b1 = state.accept(make_event(2, "B1"), ingested(2))
    a2 = state.accept(make_event(3, "A1"), ingested(3))
    assert a1 and b1 and a2
    assert (a1["seq"], b1["seq"], a2["seq"]) == (1, 1, 2)
    assert a2["prev_hash"] == a1["hash"]
    assert b1["prev_hash"] == GENESIS


def test_state_dedups_a_repeated_event_id_within_the_window() -> None:
    state = LedgerState(dedup_window_days=7)
    first = state.accept(make_event(1), ingested(1))
    assert first is not None
    assert state.accept(make_event(1), ingested(2)) is None  # redelivered: same id
    changed = make_event(99, event_id=first["event_id"])  # same id, other content: still a repeat
    assert state.accept(changed, ingested(3)) is None
    assert state.accept(make_event(1), ingested(4, day=7)) is None  # still inside the window
    assert state.heads["A0001SELLER"].seq == 1
    # The same event id on another account is another event.
    other = state.accept(make_event(1, "B1"), ingested(5))
    assert other is not None and other["seq"] == 1


def test_state_forgets_ids_after_the_window() -> None:
    state = LedgerState(dedup_window_days=7)
    first = state.accept(make_event(1), ingested(1))
    assert first is not None
    # A later day's accept sweeps ids older than the window, whichever event triggers it.
    second = state.accept(make_event(2), ingested(1, day=8))
    assert second is not None
    assert not state.has_seen(id_digest("A0001SELLER", first["event_id"]))
    again = state.accept(make_event(1), ingested(2, day=8))
    assert again is not None and again["seq"] == 3
    assert verify(rows_of([first, second, again])) is None


def test_sweep_keeps_ids_seen_inside_the_window() -> None:
    state = LedgerState(dedup_window_days=2)
    state.accept(make_event(1), ingested(1, day=0))
    state.accept(make_event(2), ingested(1, day=1))
    state.accept(make_event(3), ingested(1, day=3))  # sweeps day 0 only (3 - 2 = 1 is kept)
    kept = {
        f"gw-{i:06d}"
        for i in range(1, 4)
        if state.has_seen(id_digest("A0001SELLER", f"gw-{i:06d}"))
    }
    assert kept == {"gw-000002", "gw-000003"}
    assert state.seen_count() == 2 and len(state.exact_keys()) == 2


def test_observe_then_accept_continues_the_chain_exactly() -> None:
    live = LedgerState(dedup_window_days=7)
    committed = [
        live.accept(make_event(i, "A1" if i % 3 else "B1"), ingested(i)) for i in range(1, 10)
    ]
    assert all(committed)
    # A restarted worker rebuilds its state from the committed ledger records (as JSON).
    recovered = LedgerState(dedup_window_days=7)
    for entry in committed:
        assert entry is not None
        recovered.observe(orjson.loads(encode_entry(entry)))
    assert recovered.heads == live.heads
    nxt = make_event(10, "A1")
    continued = recovered.accept(nxt, ingested(10))
    expected = live.accept(nxt, ingested(10))
    assert continued == expected  # same seq, same prev_hash, same hash: no fork
    assert recovered.accept(make_event(4, "A1"), ingested(11)) is None  # redelivered after commit
    chain = [e for e in [*committed, continued] if e and e["account_id"] == "A1"]
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    assert verify(rows_of(chain)) is None


def test_epoch_day() -> None:
    assert epoch_day("1970-01-01T23:59:59.999Z") == 0
    assert epoch_day("1970-01-02T00:00:00.000Z") == 1
    assert epoch_day(ingested(0, day=3)) - epoch_day(ingested(0)) == 3


# -- rows from the warehouse --------------------------------------------------------------------


def warehouse_rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    """What `CHAIN_QUERY` returns: toString(ingested_at) is `YYYY-MM-DD HH:MM:SS.mmm`, payload a string."""
    return [
        [
            e["seq"],
            e["event_id"],
            e["prev_hash"],
            e["hash"],
            e["ingested_at"].replace("T", " ").removesuffix("Z"),
            canonical(event_of(e)).decode(),
        ]
        for e in entries
    ]


def test_verify_stored_accepts_warehouse_rows() -> None:
    rows = warehouse_rows(build_chain(5))
    assert rows[0][4].count(" ") == 1 and not rows[0][4].endswith("Z")
    assert verify_stored(rows) is None
    # JSON result sets may quote UInt64 as strings.
    assert verify_stored([[str(r[0]), *r[1:]] for r in rows]) is None
    assert verify_stored(tuple(r) for r in rows) is None


def test_verify_stored_reports_a_tampered_row() -> None:
    entries = build_chain(5)
    rows = warehouse_rows(entries)
    forged = rows[1][5].replace('"new":"12.49"', '"new":"1.49"')
    assert forged != rows[1][5]
    rows[1][5] = forged
    found = verify_stored(rows)
    assert found is not None and (found.seq, found.event_id) == (2, entries[1]["event_id"])


@pytest.mark.parametrize("stamp", ["2026-10-25 06:13:20.007", "2026-10-25 06:13:20.000"])
def test_verify_stored_rebuilds_the_ingest_timestamp(stamp: str) -> None:
    event = make_event(1)
    at = stamp.replace(" ", "T") + "Z"
    entry, _ = append(ChainHead(), event, at)
    row = [1, entry["event_id"], GENESIS, entry["hash"], stamp, canonical(event).decode()]
    assert verify_stored([row]) is None


def test_a_chain_head_is_a_value() -> None:
    import copy
    import pickle
    from unittest import mock

    head = ChainHead(3, "a" * 64)
    assert head == ChainHead(3, "a" * 64) and hash(head) == hash(ChainHead(3, "a" * 64))
    assert head != ChainHead(4, "a" * 64) and head != ChainHead(3, "b" * 64)
    assert head != (3, "a" * 64) and head == mock.ANY  # other types decide for themselves
    assert copy.copy(head) == copy.deepcopy(head) == pickle.loads(pickle.dumps(head)) == head
    assert repr(ChainHead()) == f"ChainHead(seq=0, hash='{'0' * 64}')"
    assert {head: 1}[ChainHead(3, "a" * 64)] == 1
