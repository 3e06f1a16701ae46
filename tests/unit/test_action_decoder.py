"""The ingest service's typed validator (pipeline/action_decoder.py) against today's, `parse_action`.

On every message both must agree: the same normalized event (same keys in the same order, same
values and types), or a `Rejected` with the same reason and detail. The messages are the
validator fuzz's strategies (random JSON, deep nesting, huge strings, invalid UTF-8, numbers out of
range, time zones, IPv6 forms, near-valid events), generated events of every action with fields
mutated, every example event of the unit tests, and the simulator's traffic with every attack.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.action_decoder import decode_action
from pipeline.contract import ACTIONS
from pipeline.event import Rejected, parse_action
from pipeline.simulation.traffic import ATTACKS, generate
from tests.reliability.test_validator_fuzz import STRATEGIES
from tests.unit.test_event import RICH, minimal, variant


def outcome(fn: Any, raw: bytes) -> tuple[str, Any]:
    try:
        event = fn(raw)
    except Rejected as exc:
        return "rejected", (exc.reason, exc.detail)
    return "accepted", (list(event), orjson.dumps(event), _types(event))


def _types(value: Any) -> Any:
    """The Python types inside a value (1 and 1.0, True and 1 serialize apart, but say it anyway)."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def agree(raw: bytes) -> None:
    assert outcome(decode_action, raw) == outcome(parse_action, raw), raw[:300]


def as_bytes(case: Any) -> bytes | None:
    if isinstance(case, bytes):
        return case
    try:
        return orjson.dumps(case)
    except orjson.JSONEncodeError:
        return None


_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_agrees_with_parse_action_on_the_fuzz_strategies(name: str) -> None:
    strategy = STRATEGIES[name][0]

    @_SETTINGS
    @given(strategy)
    def run(case: Any) -> None:
        raw = as_bytes(case)
        if raw is not None:
            agree(raw)

    run()


_strings = st.text(max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "a",
        "\\",
        '"',
        "\u00e9",
        "e\u0301",
        "\u0130",
        "\U0001f600",
        "\u200b",
        "\x00",
        "\x7f",
        "\ud7ff",
        "A0001SELLER",
        "prov-003",
        "4111 1111 1111 1111",
        "DE89370400440532013000",
        "x@example.com",
        "+49 30 1234567",
        "sha256:" + "0" * 64 + ":1234",
        "12.50",
        "-1",
        "1e3",
        "2026-11-02T14:05:09.120Z",
        "2026-02-30T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z",
        "2200-12-31T23:59:59.999Z",
        "2201-01-01T00:00:00.000Z",
        "2026-11-02t14:05:09.120z",
        "2026-11-02T24:00:00.000Z",
        "2026-11-02T14:05:60.000Z",
        "2026-11-02 14:05:09.120Z",
        "2026-11-02T14:05:09.12Z",
    ]
)
_numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            0,
            -0.0,
            1.0,
            2**53,
            2**53 + 1,
            -(2**53) - 1,
            1e16,
            5e-324,
            1.7976931348623157e308,
            0.1,
            100.0,
        ]
    )
)
_values = (
    st.none()
    | st.booleans()
    | _strings
    | _numbers
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
_PATHS = [
    "event_id",
    "occurred_at",
    "account_id",
    "marketplace",
    "action",
    "operation",
    "approval_id",
    "outcome",
    "actor",
    "actor__type",
    "actor__provider_id",
    "actor__principal_id",
    "actor__extra",
    "source",
    "source__ip",
    "source__user_agent",
    "source__session_id",
    "source__port",
    "resource",
    "resource__type",
    "resource__id",
    "resource__name",
    "changes",
    "changes__0",
    "changes__0__field",
    "changes__0__old",
    "changes__0__new",
    "changes__0__why",
    "amount",
    "amount__value",
    "amount__currency",
    "grant",
    "approval",
    "policy",
    "origin",
    "unknown",
]


def _edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    try:
        return variant(doc, **{path: value})
    except (KeyError, IndexError, TypeError, ValueError):  # the path runs through a changed value
        return doc


@_SETTINGS
@given(
    st.sampled_from(sorted(ACTIONS)),
    st.lists(st.tuples(st.sampled_from(_PATHS), _values), max_size=4),
    st.booleans(),
)
def test_agrees_on_events_of_every_action_with_fields_changed(
    action: str, edits: list[tuple[str, Any]], rich: bool
) -> None:
    doc = variant(RICH, action=action) if rich else minimal(action)
    for path, value in edits:
        doc = _edit(doc, path, value)
    raw = as_bytes(doc)
    if raw is not None:
        agree(raw)


@_SETTINGS
@given(st.sampled_from(sorted(ACTIONS)), st.sampled_from(_PATHS))
def test_agrees_when_a_field_is_dropped(action: str, path: str) -> None:
    raw = as_bytes(_edit(minimal(action), path, None))
    if raw is not None:
        agree(raw)
        agree(raw.replace(b":null", b":null ", 1))


def test_agrees_on_the_simulators_traffic_with_every_attack() -> None:
    accepted = 0
    for event, _ in generate(20_000, seed=7, accounts=24, attack_rate=0.01, attack_kinds=ATTACKS):
        raw = orjson.dumps(event)
        agree(raw)
        accepted += 1
    assert accepted == 20_000


def test_agrees_on_the_examples_every_action_and_whitespace() -> None:
    for action in sorted(ACTIONS):
        raw = orjson.dumps(minimal(action))
        agree(raw)
        agree(orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2))
    agree(orjson.dumps(RICH))
    agree(b"  " + orjson.dumps(RICH) + b"\n")
    agree(orjson.dumps(RICH)[:-1])  # cut short
    agree(orjson.dumps(RICH) + b"x")
    agree(
        orjson.dumps(RICH).replace(b'"DE"', b'"A1PA6795UKMFR9"')
    )  # a marketplace ID, stored as its site code


def test_too_large_is_refused_before_decoding() -> None:
    raw = orjson.dumps(variant(RICH, operation="x" * 200))
    with pytest.raises(Rejected) as caught:
        decode_action(raw, max_bytes=100)
    assert caught.value.reason == "too_large"


def test_agrees_on_every_edge_value_in_every_field() -> None:
    """Every listed edge value (timestamps of impossible days and out-of-range years, escapes,
    non-ASCII, card numbers, masks, big and odd numbers) in every field of a rich event."""
    edge_values: list[Any] = [
        "",
        " ",
        "a",
        "\\",
        '"',
        "\u00e9",
        "e\u0301",
        "\u0130",
        "\U0001f600",
        "\u200b",
        "\x00",
        "\x7f",
        "A0001SELLER",
        "4111 1111 1111 1111",
        "DE89370400440532013000",
        "x@example.com",
        "+49 30 1234567",
        "sha256:" + "0" * 64 + ":1234",
        "12.50",
        "1e3",
        "2026-11-02T14:05:09.120Z",
        "2026-02-30T00:00:00.000Z",
        "2024-02-29T00:00:00.000Z",
        "2023-02-29T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00.000Z",
        "2200-12-31T23:59:59.999Z",
        "2201-01-01T00:00:00.000Z",
        "2026-11-02t14:05:09.120z",
        "2026-11-02T24:00:00.000Z",
        "2026-11-02T14:05:60.000Z",
        "2026-11-02 14:05:09.120Z",
        "2026-11-02T14:05:09.12Z",
        "2026-13-02T14:05:09.120Z",
        "0000-01-01T00:00:00.000Z",
        "2026-11-02T14:05:09.120+00:00",
        "::ffff:192.0.2.1",
        "192.0.2.1",
        "fe80::1%eth0",
        None,
        True,
        0,
        -0.0,
        1.0,
        2**53,
        2**53 + 1,
        2**64,
        1e16,
        0.1,
        [],
        {},
        ["x"],
        {"a": 1},
    ]
    for path in _PATHS:
        for value in edge_values:
            for base in (RICH, minimal("funds.refund"), minimal("permission.grant")):
                raw = as_bytes(_edit(base, path, value))
                if raw is not None:
                    agree(raw)
