"""The ledger record built on the canonical encoding (`LedgerState.sequence`) against today's bytes.

The ingest service encodes an event once (`canonical`, sorted keys) and builds the ledger record
on those bytes (`pipeline.ledger.entry_record`), where the agent it replaced hashed `canonical`
and then serialized the entry dict again (`encode_entry`). On any event, both ways must give the
same seq and hash, records that read back as the same JSON object (floats bit for bit), and a
record whose event part is exactly the bytes the hash covers, so `verify` and the warehouse's
`payload` (re-encoded from the record) agree with the chain.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.event import canonical
from pipeline.ledger import LedgerState, encode_entry, entry_hash, event_of
from pipeline.simulation.traffic import ATTACKS, generate

_keys = st.text(max_size=6) | st.sampled_from(
    ["é", "ü", "日本", "\U0001f600", 'a"b', "a\\b", "\n", "\x00", "\u2028", "Z", "a", "ä"]
)
_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [
        0.1,
        1e16,
        1e-7,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        1.0,
        123456789.123456789,
        2.5e-5,
        1e21,
        1e22,
    ]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | _floats
    | st.text(max_size=12)
    | st.sampled_from(
        [
            '"quoted"',
            "back\\slash",
            "tab\t",
            "nl\n",
            "\x1f",
            "\u2028\u2029",
            "émoji \U0001f600",
            "</script>",
            "\ud7ff",
        ]
    )
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=12,
)

events = st.builds(
    lambda account, event_id, extra: {
        "event_id": event_id,
        "account_id": account,
        "action": "policy.update",
        **extra,
    },
    st.sampled_from(["A0001SELLER", "A0002SELLER", "ÄCCOUNT"]),
    st.text(min_size=1, max_size=12),
    st.dictionaries(
        st.sampled_from(["policy", "origin", "changes", "résumé", "occurred_at", "z", "a"]),
        _json,
        max_size=4,
    ),
)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON, floats bit for bit (so -0.0 and 0.0 differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1, a) == math.copysign(1, b) and a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check(events_in_order: list[dict[str, Any]]) -> None:
    today, new = LedgerState(7), LedgerState(7)
    for offset, event in enumerate(events_in_order):
        at = "2026-11-02T06:00:00.395Z"
        entry = today.accept(event, at, offset)
        sequenced = new.sequence(event, at, offset)
        if entry is None:
            assert sequenced is None  # a duplicate for both
            continue
        assert sequenced is not None
        seq, record = sequenced
        decoded = orjson.loads(record)
        assert seq == entry["seq"]
        assert _same(decoded, orjson.loads(encode_entry(entry)))
        payload = canonical(event)
        assert record.startswith(payload[:-1] + b",")  # the hashed bytes, as they are
        assert canonical(event_of(decoded)) == payload  # and what a reader re-encodes
        assert (
            entry_hash(decoded["prev_hash"], seq, at, payload) == decoded["hash"] == entry["hash"]
        )
    assert new.heads == today.heads


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(events, min_size=1, max_size=6))
def test_records_match_todays_bytes_on_generated_events(batch: list[dict[str, Any]]) -> None:
    check(batch)


def test_records_match_on_the_simulators_traffic() -> None:
    check([event for event, _ in generate(3_000, seed=5, attack_rate=0.01, attack_kinds=ATTACKS)])


def test_a_record_without_source_offset_and_a_repeat() -> None:
    state = LedgerState(7)
    event = {"event_id": "e1", "account_id": "A1", "x": 1.5}
    first = state.sequence(event, "2026-11-02T06:00:00.395Z", 41)
    assert first is not None and orjson.loads(first[1])["ingest_offset"] == 41
    assert state.sequence(event, "2026-11-02T06:00:00.396Z", 42) is None
