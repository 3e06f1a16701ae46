"""The loader's fast path (`store_raw`): ClickHouse takes the ledger's raw records.

It must store exactly what the per-record path (`ledger_line` + `store_lines`) stores, or refuse
the whole batch (the loader then takes the per-record path). Checked on the simulator's ledger,
on generated events full of escapes, non-ASCII, floats and nested values (sequenced and hashed as
ingest does), on records of another layout, on byte-mutated records, on records whose hash
covers a shape the per-record path refuses (forged: anyone who can write the topic can compute
a SHA-256), and on a repeated entry.
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
from pipeline.ledger import LedgerState, encode_entry, entry_hash, entry_record
from pipeline.simulation.traffic import generate
from sinks.audit_store import RAW_REFUSED, BadRecord, ledger_line, store_lines, store_raw
from sinks.clickhouse import EmbeddedWarehouse, WarehouseError, migrate
from tests.unit.test_loader_lines import mutated

COLUMNS = ", ".join(f"toString({c})" for c in EVENT_COLUMNS)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWarehouse]:
    wh = EmbeddedWarehouse(Path(tmp_path_factory.mktemp("raw")) / "warehouse")
    migrate(wh, Settings.from_env({}))
    yield wh
    wh.close()


def rows(warehouse: EmbeddedWarehouse) -> list[list[Any]]:
    return sorted(warehouse.query(f"SELECT {COLUMNS} FROM audit.events").rows)


def old_rows(warehouse: EmbeddedWarehouse, raws: list[bytes]) -> list[list[Any]] | None:
    """The per-record path's rows for `raws`, or None when it refuses one of them."""
    warehouse.execute("TRUNCATE TABLE audit.events")
    try:
        lines = [ledger_line(raw) for raw in raws]
    except BadRecord:
        return None
    store_lines(warehouse, lines)
    return rows(warehouse)


def raw_rows(warehouse: EmbeddedWarehouse, raws: list[bytes]) -> list[list[Any]] | None:
    """The fast path's rows for `raws`, or None when it refuses the batch (nothing stored)."""
    warehouse.execute("TRUNCATE TABLE audit.events")
    try:
        assert store_raw(warehouse, raws) == len(raws)
    except WarehouseError as exc:
        assert RAW_REFUSED in str(exc), exc
        assert rows(warehouse) == [], "a refused batch stored rows"
        return None
    return rows(warehouse)


def same_or_refused(warehouse: EmbeddedWarehouse, raws: list[bytes]) -> bool:
    """The fast path stores what the per-record path stores, or refuses; True if it stored."""
    fast = raw_rows(warehouse, raws)
    if fast is None:
        return False
    assert fast == old_rows(warehouse, raws)
    return True


def sequenced(events: list[dict[str, Any]]) -> list[bytes]:
    """Ledger records as the ingest service writes them (`LedgerState.sequence`)."""
    state = LedgerState(7)
    out = []
    for n, event in enumerate(events):
        done = state.sequence(event, format_ms(1_793_599_260_000 + n), n)
        if done is not None:
            out.append(done[1])
    return out


def simulated(count: int, seed: int) -> list[bytes]:
    kinds = (
        "ip_outside_allowlist",
        "price_change_over_limit",
        "funds_without_approval",
        "account_takeover_sequence",
        "refund_burst",
    )
    return sequenced(
        [
            normalize(event)
            for event, _ in generate(count, seed=seed, attack_rate=0.05, attack_kinds=kinds)
        ]
    )


def test_simulated_ledger_takes_the_fast_path_with_the_same_rows(
    warehouse: EmbeddedWarehouse,
) -> None:
    raws = simulated(3_000, seed=23)
    assert same_or_refused(warehouse, raws), "the simulator's ledger was refused"
    assert len(rows(warehouse)) == len(raws)


def base_event(n: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"ev-{n}",
        "occurred_at": "2026-11-02T10:00:00.123Z",
        "account_id": "A0001SELLER",
        "action": "listing.update",
        "actor": {"type": "provider", "principal_id": "svc", "provider_id": "P1"},
        "outcome": "success",
    }


def forged(event: dict[str, Any], seq: int = 1, offset: int | None = 0) -> bytes:
    """A record in ingest's layout whose hash covers `event` as given (bytes of our choosing)."""
    payload = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    ingested_at = "2026-11-02T10:00:01.000Z"
    digest = entry_hash("0" * 64, seq, ingested_at, payload)
    return entry_record(payload, seq, "0" * 64, digest, ingested_at, offset)


def test_a_plain_forged_record_is_stored_as_the_per_record_path_stores_it(
    warehouse: EmbeddedWarehouse,
) -> None:
    assert same_or_refused(warehouse, [forged(base_event()), forged(base_event(2), 2, None)])


REFUSED = [
    ("event_id not a string", lambda e: e.update(event_id=7)),
    ("no outcome", lambda e: e.pop("outcome")),
    ("actor without principal", lambda e: e.update(actor={"type": "provider"})),
    ("provider_id null", lambda e: e["actor"].update(provider_id=None)),
    ("source a list", lambda e: e.update(source=["1.2.3.4"])),
    ("amount value a float", lambda e: e.update(amount={"value": 1.5, "currency": "EUR"})),
    ("marketplace null", lambda e: e.update(marketplace=None)),
    ("no such day", lambda e: e.update(occurred_at="2026-02-30T10:00:00.000Z")),
    ("not a ledger time", lambda e: e.update(occurred_at="2026-11-02 10:00:00.123")),
    ("a dot that is not a dot", lambda e: e.update(occurred_at="2026-11-02T10:00:00x123Z")),
    ("before 1970", lambda e: e.update(occurred_at="1969-12-31T23:59:59.999Z")),
    ("a ledger field inside", lambda e: e.update(seq=5)),
]


@pytest.mark.parametrize(("what", "edit"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_forged_record_the_per_record_path_refuses_is_refused(
    warehouse: EmbeddedWarehouse, what: str, edit: Any
) -> None:
    event = base_event()
    edit(event)
    batch = [forged(base_event(2), 2), forged(event)]
    assert raw_rows(warehouse, batch) is None, what


def forged_bytes(payload: bytes, tail: str | None = None) -> bytes:
    """A record whose hash covers `payload` exactly as given (any bytes), with `tail` in place of
    the ledger fields `entry_record` writes when given (the hash still over `payload`)."""
    ingested_at = "2026-11-02T10:00:01.000Z"
    digest = entry_hash("0" * 64, 1, ingested_at, payload)
    if tail is None:
        return entry_record(payload, 1, "0" * 64, digest, ingested_at, 0)
    return payload[:-1] + tail.format(digest=digest, prev="0" * 64, at=ingested_at).encode()


_PLAIN_PAYLOAD = orjson.dumps(base_event(), option=orjson.OPT_SORT_KEYS)
_TAIL = ',"seq":{seq},"prev_hash":"{{prev}}","hash":"{{digest}}","ingested_at":"{{at}}"{rest}}}}}'
FORGED_BYTES = [
    ("a key twice", _PLAIN_PAYLOAD.replace(b'"action":', b'"action":"x","action":'), None),
    (
        "an actor key twice",
        _PLAIN_PAYLOAD.replace(b'"principal_id":', b'"principal_id":"a","principal_id":'),
        None,
    ),
    (
        "a source key twice",
        _PLAIN_PAYLOAD[:-1] + b',"source":{"ip":"1.2.3.4","ip":5}}',
        None,
    ),
    ("an actor key not a string", _PLAIN_PAYLOAD.replace(b'"type":"provider"', b'"type":1'), None),
    (
        "actor not an object",
        _PLAIN_PAYLOAD.replace(b'"actor":{', b'"actor":[{').replace(b'"P1"}', b'"P1"}]'),
        None,
    ),
    ("seq 0", _PLAIN_PAYLOAD, _TAIL.format(seq="0", rest="")),
    ("seq with a leading zero", _PLAIN_PAYLOAD, _TAIL.format(seq="01", rest="")),
    ("seq of 21 digits", _PLAIN_PAYLOAD, _TAIL.format(seq="1" * 21, rest="")),
    ("an offset not a number", _PLAIN_PAYLOAD, _TAIL.format(seq="1", rest=',"ingest_offset":x')),
    ("an empty offset", _PLAIN_PAYLOAD, _TAIL.format(seq="1", rest=',"ingest_offset":')),
    (
        "an offset with a leading zero",
        _PLAIN_PAYLOAD,
        _TAIL.format(seq="1", rest=',"ingest_offset":01'),
    ),
    ("a byte order mark first", b"\xef\xbb\xbf" + _PLAIN_PAYLOAD, None),
    ("a space first", b" " + _PLAIN_PAYLOAD, None),
    (
        "something after the offset",
        _PLAIN_PAYLOAD,
        _TAIL.format(seq="1", rest=',"ingest_offset":5,"x":1'),
    ),
    (
        "a space in the tail",
        _PLAIN_PAYLOAD,
        _TAIL.format(seq="1", rest="").replace('"seq":', '"seq": '),
    ),
]


@pytest.mark.parametrize(
    ("what", "payload", "tail"), FORGED_BYTES, ids=[r[0] for r in FORGED_BYTES]
)
def test_forged_bytes_are_refused_or_stored_as_the_per_record_path_stores_them(
    warehouse: EmbeddedWarehouse, what: str, payload: bytes, tail: str | None
) -> None:
    """Records no orjson encoding of a dict gives (repeated keys, odd tails): whatever the
    per-record path makes of them, the fast path stores the same or refuses the batch."""
    batch = [forged(base_event(2), 2), forged_bytes(payload, tail)]
    assert not same_or_refused(warehouse, batch), what


def test_a_forged_record_with_a_plain_tail_and_an_offset_is_stored(
    warehouse: EmbeddedWarehouse,
) -> None:
    for rest in ("", ',"ingest_offset":0', ',"ingest_offset":9999999999999999999'):
        assert same_or_refused(
            warehouse, [forged_bytes(_PLAIN_PAYLOAD, _TAIL.format(seq="1", rest=rest))]
        ), rest


def test_other_layouts_repeats_and_broken_bytes_are_refused(warehouse: EmbeddedWarehouse) -> None:
    event = base_event()
    ingested_at = "2026-11-02T10:00:01.000Z"
    digest = entry_hash("0" * 64, 1, ingested_at, orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
    entry = {**event, "seq": 1, "prev_hash": "0" * 64, "hash": digest, "ingested_at": ingested_at}
    good = forged(base_event())
    assert old_rows(warehouse, [encode_entry(entry)]) == old_rows(warehouse, [good])
    for batch in (
        [encode_entry(entry)],  # the old layout: the event's keys in their own order
        [good, good],  # one entry twice
        [good[:-1]],  # truncated
        [good.replace(b'"A0001SELLER"', b'"A0001SELLES"')],  # the hash no longer covers it
        [b"\x00{not json"],
        [b" " + good],
    ):
        assert raw_rows(warehouse, batch) is None, batch


text = st.text(max_size=12) | st.sampled_from(
    ["", '"', "\\", "\n", "\x00", "\u2028", "\U0001f600", "é", "$$", "'", "/", "\x7f"]
)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event = base_event(draw(st.integers(0, 10**6)))
    event["event_id"] = draw(text)
    event["account_id"] = draw(st.sampled_from(["A1", "A2", "A\u00e9", 'A"3']))
    event["actor"] = {"type": draw(text), "principal_id": draw(text)}
    if draw(st.booleans()):
        event["actor"]["provider_id"] = draw(text)
    for name in ("marketplace", "operation", "approval_id"):
        if draw(st.booleans()):
            event[name] = draw(text)
    for name in ("changes", "origin", "grant", draw(text)):
        if draw(st.booleans()):
            event[name] = draw(json_value)
    for name, fields in (
        ("source", ("ip", "user_agent", "session_id")),
        ("resource", ("type", "id")),
        ("amount", ("value", "currency")),
    ):
        if draw(st.booleans()):
            event[name] = {f: draw(text) for f in fields if draw(st.booleans())}
    if draw(st.integers(0, 4)) == 0:
        event["occurred_at"] = draw(
            st.sampled_from(
                ["2028-02-29T23:59:59.999Z", "2200-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z"]
            )
        )
    return event


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(events(), min_size=1, max_size=30))
def test_generated_events_store_the_same_rows(
    warehouse: EmbeddedWarehouse, batch: list[dict[str, Any]]
) -> None:
    for event in batch:
        event.pop("seq", None)  # a drawn key may be a ledger field: not an event
        for name in ("prev_hash", "hash", "ingested_at", "ingest_offset"):
            event.pop(name, None)
    same_or_refused(warehouse, sequenced(batch))


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
def test_mutated_records_are_refused_or_the_same(
    warehouse: EmbeddedWarehouse, edits: list[tuple[int, int, str]]
) -> None:
    same_or_refused(warehouse, mutated(SAMPLE[:40], edits))


SAMPLE = simulated(200, seed=5)


def test_a_loader_batch_is_written_as_one_compact_part(warehouse: EmbeddedWarehouse) -> None:
    """A batch of the loader's size (20,000 records, over ClickHouse's 10 MiB default for a wide
    part) is stored as compact parts of audit.events (migration 0010): one file for its columns,
    not two per column and per skip index."""
    raws = simulated(21_000, seed=7)[:20_000]
    assert len(raws) == 20_000
    warehouse.execute("TRUNCATE TABLE audit.events")
    warehouse.execute("SYSTEM STOP MERGES audit.events")
    try:
        store_raw(warehouse, raws)
        parts = warehouse.query(
            "SELECT part_type, rows, data_uncompressed_bytes FROM system.parts "
            "WHERE active AND database = 'audit' AND table = 'events'"
        ).rows
    finally:
        warehouse.execute("SYSTEM START MERGES audit.events")
    assert sum(int(r[1]) for r in parts) == 20_000
    # the batch's months: a part each, the largest past the default threshold
    assert max(int(r[2]) for r in parts) > 10 * 1024 * 1024
    assert {r[0] for r in parts} == {"Compact"}
