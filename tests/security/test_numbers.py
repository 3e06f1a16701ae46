"""Issue 15, finding 18: integers beyond what the contract holds are refused, whatever their size.

Before: orjson reads an integer beyond 64 bits as a float, so `2^64` in `changes` was stored as
`1.8446744073709552e+19` while `2^60` was refused (`bad_value`, integers lie within +-2^53), and
integers of any size inside `policy` were stored. Now the message is read again with exact
integers whenever it holds a 19-digit run, and every integer of the event, `policy` included, lies
within +-2^53 or the event is refused with `bad_value`; a number literal beyond a double's range
(`1e400`, 400 digits) is `bad_value` too.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.event import Rejected, parse_action
from tests.unit.test_event import RICH, minimal

LIMIT = 2**53


def wire(template: dict[str, Any], number: str) -> bytes:
    """`template` as JSON with the placeholder string "NUMBER" replaced by the literal `number`."""
    return orjson.dumps(template).replace(b'"NUMBER"', number.encode())


#: Where a number may stand in an event, as a template with "NUMBER" in that place.
SLOTS = {
    "changes.new": {**RICH, "changes": [{"field": "quantity", "old": 3, "new": "NUMBER"}]},
    "changes.old": {**RICH, "changes": [{"field": "quantity", "old": "NUMBER", "new": 3}]},
    "policy.key": {**minimal("policy.update"), "policy": {"max_items": "NUMBER"}},
    "policy.nested": {**minimal("policy.update"), "policy": {"limits": [{"a": {"b": ["NUMBER"]}}]}},
    "policy.rate": {**minimal("policy.update"), "policy": {"rate_limit_per_min": "NUMBER"}},
    "grant.pct": {
        **minimal("permission.grant"),
        "grant": {"grant_id": "g", "provider_id": "p", "max_price_change_pct": "NUMBER"},
    },
}


def verdict(raw: bytes) -> Any:
    try:
        return parse_action(raw)
    except Rejected as exc:
        return exc.reason


@pytest.mark.parametrize("slot", sorted(SLOTS))
@pytest.mark.parametrize(
    "number",
    [
        str(2**64),
        str(2**64 + 1),
        str(-(2**63) - 1),
        str(-(2**64)),
        str(2**64 - 1),
        str(2**60),
        str(LIMIT + 1),
        str(-(LIMIT + 1)),
        "1" + "0" * 30,
        "1" + "0" * 400,
        "-" + "9" * 400,
        "1e400",
        "-1e400",
    ],
)
def test_integers_beyond_the_range_are_refused(slot: str, number: str) -> None:
    assert verdict(wire(SLOTS[slot], number)) == "bad_value"


def test_huge_integer_is_not_stored_as_a_float() -> None:
    """The case from the issue: before, this was accepted with new == 1.8446744073709552e+19."""
    result = verdict(wire(SLOTS["changes.new"], str(2**64)))
    assert result == "bad_value", result


@pytest.mark.parametrize("number", [str(LIMIT), str(-LIMIT), "0", "-1", "42"])
def test_integers_within_the_range_are_kept_exact(number: str) -> None:
    for slot in ("changes.new", "policy.key", "policy.nested"):
        event = verdict(wire(SLOTS[slot], number))
        assert isinstance(event, dict), (slot, event)
        text = orjson.dumps(event).decode()
        assert f":{number}" in text or f"[{number}]" in text, text
        assert "e+" not in text


def test_floats_and_long_digit_strings_are_not_affected() -> None:
    for number in ("2.5", "1e300", "-0.0", "18446744073709551616.5"):
        event = verdict(wire(SLOTS["changes.new"], number))
        assert isinstance(event, dict) and isinstance(event["changes"][0]["new"], float), number
    # A 30-digit run inside a string is text, not a number (and is read again without harm).
    event = verdict(orjson.dumps({**RICH, "operation": "op" + "1" * 30}))
    assert isinstance(event, dict) and event["operation"] == "op" + "1" * 30


@settings(max_examples=400, deadline=None)
@given(
    slot=st.sampled_from(sorted(SLOTS)),
    number=st.integers(min_value=LIMIT + 1, max_value=10**200)
    | st.integers(min_value=-(10**200), max_value=-(LIMIT + 1)),
)
def test_every_integer_beyond_2_53_is_refused(slot: str, number: int) -> None:
    assert verdict(wire(SLOTS[slot], str(number))) == "bad_value"


@settings(max_examples=300, deadline=None)
@given(number=st.integers(min_value=-LIMIT, max_value=LIMIT))
def test_every_integer_within_2_53_is_accepted_as_an_integer(number: int) -> None:
    event = verdict(wire(SLOTS["changes.new"], str(number)))
    assert isinstance(event, dict)
    stored = event["changes"][0]["new"]
    assert type(stored) is int and stored == number
