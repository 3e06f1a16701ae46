"""The loader's path (issue 16): ClickHouse derives each audit.events row from the canonical event.

Two implementations must agree, so each is checked against the one it replaced in the loader:
- `ledger_line` (one decode, a quick shape check, one canonical encoding) gives the verdict of
  `checked_entry` on every record: the same dead-letter reason, or both accept;
- the rows `store_lines` has ClickHouse build are, column for column, the rows `event_row` builds
  in Python (what `verify-chain` recomputes), on simulated ledgers and on generated entries full of
  escapes, non-ASCII, NULs, missing and extra fields, and on byte-mutated records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audit_row import EVENT_COLUMNS
from pipeline.config import Settings
from pipeline.event import format_ms, normalize
from pipeline.ledger import LedgerState, encode_entry
from pipeline.simulation.traffic import generate
from sinks.audit_store import (
    BadRecord,
    checked_entry,
    event_row,
    ledger_line,
    store_lines,
    stored_keys,
)
from sinks.clickhouse import EmbeddedWarehouse, migrate

COLUMNS = ", ".join(f"toString({c})" for c in EVENT_COLUMNS)
HEX = "0123456789abcdef"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWarehouse]:
    wh = EmbeddedWarehouse(Path(tmp_path_factory.mktemp("lines")) / "warehouse")
    migrate(wh, Settings.from_env({}))
    yield wh
    wh.close()


def verdict(raw: bytes) -> tuple[str, Any]:
    """("bad", reason) or ("ok", entry) from `checked_entry`, the reference."""
    try:
        return "ok", checked_entry(raw)
    except BadRecord as bad:
        return "bad", bad.reason


def roundtrip(warehouse: EmbeddedWarehouse, raws: list[bytes]) -> int:
    """Store the accepted ones with `store_lines` and compare every column with `event_row`;
    return how many were compared. The table is emptied first (each call stands alone)."""
    warehouse.execute("TRUNCATE TABLE audit.events")
    expected: dict[tuple[str, int], list[str]] = {}
    lines = []
    for raw in raws:
        reference = verdict(raw)
        try:
            line = ledger_line(raw)
        except BadRecord as bad:
            assert reference == ("bad", bad.reason), (raw[:300], reference, bad.reason)
            continue
        assert reference[0] == "ok", (raw[:300], reference)
        row = event_row(reference[1])
        key = (row["account_id"], int(row["seq"]))
        if key in expected:
            continue  # one row per (account_id, seq) in this comparison
        expected[key] = [str(row[c]) for c in EVENT_COLUMNS]
        lines.append(line)
    assert store_lines(warehouse, lines) == len(lines)
    got = {
        (r[1], int(r[2])): r for r in warehouse.query(f"SELECT {COLUMNS} FROM audit.events").rows
    }
    assert set(got) == set(expected)
    for key, want in expected.items():
        mismatched = [
            (c, a, b) for c, a, b in zip(EVENT_COLUMNS, got[key], want, strict=True) if a != b
        ]
        assert not mismatched, (key, mismatched)
    return len(expected)


def simulated(count: int, seed: int) -> list[bytes]:
    state = LedgerState(7)
    raws = []
    kinds = (
        "ip_outside_allowlist",
        "price_change_over_limit",
        "funds_without_approval",
        "account_takeover_sequence",
        "refund_burst",
    )
    for n, (event, _) in enumerate(
        generate(count, seed=seed, attack_rate=0.05, attack_kinds=kinds)
    ):
        entry = state.accept(normalize(event), format_ms(1_793_599_260_000 + n))
        if entry is not None:
            raws.append(encode_entry(entry))
    return raws


def test_simulated_ledger_rows_are_event_rows(warehouse: EmbeddedWarehouse) -> None:
    raws = simulated(3_000, seed=23)
    assert roundtrip(warehouse, raws) == len(raws)
    # the mix covers the nested and optional fields the columns come from
    text = b"\n".join(raws)
    for field in (
        b'"changes"',
        b'"amount"',
        b'"source"',
        b'"resource"',
        b'"grant"',
        b'"marketplace"',
    ):
        assert field in text, field


def base_entry(n: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n}",
        "occurred_at": "2026-11-02T10:00:00.123Z",
        "account_id": "A0001SELLER",
        "action": "listing.update",
        "actor": {"type": "provider", "principal_id": "svc", "provider_id": "P1"},
        "outcome": "success",
        "seq": n,
        "prev_hash": "0" * 64,
        "hash": "a" * 64,
        "ingested_at": "2026-11-02T10:00:01.000Z",
    }


def variant(**fields: Any) -> bytes:
    entry = base_entry()
    for name, value in fields.items():
        if value is ...:
            entry.pop(name, None)
        else:
            entry[name] = value
    return orjson.dumps(entry)


BAD = [
    (b"\x00{not json", "not_json"),
    (b"[1, 2]", "not_object"),
    (variant(event_id=...), "missing_field"),
    (variant(actor=...), "missing_field"),
    (variant(actor={"type": "provider"}), "missing_field"),
    (variant(seq="1"), "wrong_type"),
    (variant(seq=True), "wrong_type"),
    (variant(seq=0), "bad_value"),
    (
        variant(seq=1).replace(b'"seq":1,', b'"seq":18446744073709551616,'),
        "wrong_type",
    ),  # orjson: a float
    (variant(account_id=7), "wrong_type"),
    (variant(actor="provider"), "wrong_type"),
    (variant(actor={"type": "provider", "principal_id": "svc", "provider_id": None}), "wrong_type"),
    (variant(source=["1.2.3.4"]), "wrong_type"),
    (variant(source={"ip": 1}), "wrong_type"),
    (variant(amount={"value": 1.5, "currency": "EUR"}), "wrong_type"),
    (variant(marketplace=None), "wrong_type"),
    (variant(hash="A" * 64), "bad_value"),
    (variant(prev_hash="0" * 63), "bad_value"),
    (variant(occurred_at="2026-11-02 10:00:00.123"), "bad_timestamp"),
    (variant(occurred_at="2026-02-30T10:00:00.000Z"), "bad_timestamp"),  # no such day
    (variant(occurred_at="2026-11-02T10:00:00.123Z "), "bad_timestamp"),
    (
        variant(occurred_at="2026-11-02\u00e910:00:00.123Z"),
        "bad_timestamp",
    ),  # ch_time used to slice it
    (variant(ingested_at="1969-12-31T23:59:59.999Z"), "bad_timestamp"),
    (variant(ingested_at="2201-01-01T00:00:00.000Z"), "bad_timestamp"),
    (variant(ingested_at=1_793_599_260_000), "wrong_type"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_bad_records_get_the_reason_checked_entry_gives(raw: bytes, reason: str) -> None:
    assert verdict(raw) == ("bad", reason)
    with pytest.raises(BadRecord) as caught:
        ledger_line(raw)
    assert caught.value.reason == reason


def test_unusual_but_storable_records(warehouse: EmbeddedWarehouse) -> None:
    raws = [
        # repeated keys: orjson keeps the last; the row is built from what was checked
        b'{"event_id":"first","event_id":"ev-dup",'
        + variant(seq=1)[1:].replace(b'"event_id":"ev-1",', b""),
        variant(
            seq=2,
            changes=[{"field": "price", "old": "1.00", "new": 2.5e-7}],
            grant={"x": [1, {"b": None}]},
        ),
        variant(
            seq=3,
            source={},
            resource={"type": "listing"},
            amount={"currency": "EUR"},
            extra={"k": "v"},
        ),
        variant(
            seq=4, event_id='q"\\\n\t\x00\u2028\U0001f600 \u00e9', approval_id="", changes=None
        ),
        variant(
            seq=5,
            actor={"type": "seller", "principal_id": "x", "more": 1},
            marketplace="DE",
            operation="op",
        ),
        variant(
            seq=2**64 - 1,
            occurred_at="1970-01-01T00:00:00.000Z",  # the provider's claim: kept (TTL on arrival)
            ingested_at="2200-12-31T23:59:59.999Z",
        ),
        b' { "seq" : 6 , '
        + variant(seq=6)[1:].replace(b'"seq":6,', b""),  # spaces, another key order
    ]
    assert roundtrip(warehouse, raws) == len(raws)
    stored = warehouse.query("SELECT event_id, payload FROM audit.events WHERE seq = 1").rows
    assert stored[0][0] == "ev-dup" and '"event_id":"ev-dup"' in stored[0][1]


def test_stored_keys_finds_what_is_stored_by_account_and_seq(warehouse: EmbeddedWarehouse) -> None:
    warehouse.execute("TRUNCATE TABLE audit.events")
    lines = [ledger_line(variant(seq=n, event_id=f"ev-{n}")) for n in range(1, 11)]
    store_lines(warehouse, lines[:6])
    late_repeat = ledger_line(
        variant(seq=99, event_id="ev-3")
    )  # same event_id, new seq: not stored
    assert stored_keys(warehouse, [*lines, late_repeat]) == {
        ("A0001SELLER", n) for n in range(1, 7)
    }
    assert stored_keys(warehouse, []) == set()


# -- generated entries ----------------------------------------------------------------------------

text = st.text(max_size=12) | st.sampled_from(
    ["", '"', "\\", "\n", "\x00", "\u2028", "\U0001f600", "é", "$$", "'"]
)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
maybe = st.one_of(st.just(...), text, json_value)


@st.composite
def entries(draw: st.DrawFn) -> bytes:
    entry = base_entry(draw(st.integers(1, 2**64 - 1)))
    entry["event_id"] = draw(text)
    entry["account_id"] = draw(st.sampled_from(["A1", "A2", "A\u00e9", 'A"3']))
    entry["actor"] = {"type": draw(text), "principal_id": draw(text)}
    if draw(st.booleans()):
        entry["actor"]["provider_id"] = draw(st.one_of(text, json_value))
    for name in ("marketplace", "operation", "approval_id", "changes", "origin"):
        value = draw(maybe)
        if value is not ...:
            entry[name] = value
    for name, fields in (
        ("source", ("ip", "user_agent", "session_id")),
        ("resource", ("type", "id")),
        ("amount", ("value", "currency")),
    ):
        if draw(st.booleans()):
            entry[name] = {
                f: draw(st.one_of(text, text, json_value)) for f in fields if draw(st.booleans())
            }
    if draw(st.integers(0, 9)) == 0:
        entry["hash"] = draw(st.sampled_from(["", "g" * 64, "a" * 65]))
    if draw(st.integers(0, 9)) == 0:
        entry["occurred_at"] = draw(
            st.sampled_from(
                ["2026-02-29T00:00:00.000Z", "2028-02-29T23:59:59.999Z", "2026-04-31T00:00:00.000Z"]
            )
        )
    return orjson.dumps(entry)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(entries(), min_size=1, max_size=40))
def test_generated_entries(warehouse: EmbeddedWarehouse, raws: list[bytes]) -> None:
    roundtrip(warehouse, raws)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "drop", "insert"])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_records(warehouse: EmbeddedWarehouse, edits: list[tuple[int, int, str]]) -> None:
    roundtrip(warehouse, mutated(SAMPLE[:40], edits))


def mutated(raws: list[bytes], edits: list[tuple[int, int, str]]) -> list[bytes]:
    """Each record with `edits` applied (a byte set, dropped or inserted at a position that
    shifts from record to record)."""
    out = []
    for n, raw in enumerate(raws):
        data = bytearray(raw)
        for where, byte, how in edits:
            i = (where + n * 7919) % len(data)
            if how == "set":
                data[i] = byte
            elif how == "drop":
                del data[i]
            else:
                data.insert(i, byte)
        out.append(bytes(data))
    return out


SAMPLE = simulated(200, seed=5)
