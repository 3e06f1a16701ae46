"""Why an ingest message is refused, and the readers that refuse it: the validator's building blocks.

`Rejected` carries one of the stable `REASONS` (documented in docs/contract.md) that the ingest
agent writes to the dead-letter topic. The readers below take one field out of a decoded JSON
object and check its JSON type and length; `pipeline.identifiers` adds the grammar of each kind
of identifier, `pipeline.event` and `pipeline.grant_schema` the rules of each field.
"""

from __future__ import annotations

from typing import Any

import orjson

#: Rejection reasons (stable, machine-readable; documented in docs/contract.md).
REASONS = (
    "too_large",
    "bad_encoding",
    "not_json",
    "not_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_value",
    "unknown_action",
    "bad_timestamp",
    "wrong_key",
)

MAX_STR = 1024
MAX_LIST = 1000
#: Integers anywhere in an event lie within +-2^53 (what a double, and so every JSON reader, holds exactly).
MAX_INT = 2**53


class Rejected(ValueError):
    """An ingest message that breaks the contract; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def type_name(value: Any) -> str:
    """The JSON type of a decoded value, for messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def need(doc: dict[str, Any], name: str) -> Any:
    """A field that this action requires (null counts as absent)."""
    if doc.get(name) is None:
        raise Rejected("missing_field", f"{name} is required for action {doc.get('action')}")
    return doc[name]


def string(
    doc: dict[str, Any],
    name: str,
    *,
    required: bool = False,
    max_len: int = MAX_STR,
    where: str = "",
) -> Any:
    """A string field of 1-`max_len` characters; None when absent or null (unless required)."""
    value = doc.get(name)
    label = f"{where}{name}"
    if value is None:
        if required:
            raise Rejected("missing_field", f"{label} is required")
        return None
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{label} must be a string, got {type_name(value)}")
    if not 1 <= len(value) <= max_len:
        raise Rejected("bad_value", f"{label} must be 1-{max_len} characters")
    return value


def obj(value: Any, name: str, allowed: frozenset[str] | None) -> dict[str, Any]:
    """An object, with no field outside `allowed` (None: any field)."""
    if not isinstance(value, dict):
        raise Rejected("wrong_type", f"{name} must be an object, got {type_name(value)}")
    if allowed is not None:
        unknown = value.keys() - allowed
        if unknown:
            raise Rejected(
                "unknown_field", f"unknown field(s) in {name}: {', '.join(sorted(unknown)[:5])}"
            )
    return value


def check_int(value: Any, name: str) -> None:
    """Integers beyond +-2^53 are refused wherever they appear (booleans are not integers here)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise Rejected("bad_value", f"{name} is out of range (integers lie within +-2^53)")


def check_numbers(value: Any, where: str) -> None:
    """Every integer inside a JSON value lies within +-2^53 (iterative: values nest up to 255 deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            check_int(item, f"a number in {where}")


#: Levels a free-form object (`origin`, `policy`) must leave to spare under orjson's nesting
#: limit (255): one for the event it sits in, the rest for the records and responses that
#: carry an event inside their own objects and lists.
NESTING_HEADROOM = 8


def serialized_size(value: Any) -> int | None:
    """The size of `value` as JSON, or None when it cannot be written with NESTING_HEADROOM
    levels around it (nested too deeply) or holds an integer orjson cannot write."""
    wrapped = value
    for _ in range(NESTING_HEADROOM):
        wrapped = [wrapped]
    try:
        return len(orjson.dumps(wrapped)) - 2 * NESTING_HEADROOM
    except orjson.JSONEncodeError:
        return None
