"""Where an ingest event (ProviderAction) is validated and normalized: the one gate into the ledger.

`parse_action` takes the raw bytes of a Kafka message and returns the normalized event as a plain
dict (cheap to build, cheap to serialize), or raises `Rejected` with a machine-readable reason that
the ingest agent writes to the dead-letter topic. The rules mirror `schema/provider_action.schema.json`
and docs/contract.md; `tests/unit/test_event.py` keeps the schema and this module in step,
`tests/unit/test_docs.py` the page. Identifiers follow `pipeline.identifiers`; grants, approvals
and policies are checked by `pipeline.grant_schema`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson

from pipeline import grant_schema
from pipeline.contract import (
    ACTIONS,
    ACTOR_TYPES,
    AMOUNT_REQUIRED,
    OUTCOMES,
    needs_marketplace,
)
from pipeline.identifiers import identifier
from pipeline.marketplaces import site_code
from pipeline.memo import MISSING, Memo
from pipeline.origin import check_origin
from pipeline.rejection import (
    MAX_LIST,
    MAX_STR,
    REASONS,
    Rejected,
    check_int,
    check_numbers,
    need,
    obj,
    string,
    type_name,
)
from pipeline.sensitive import find_sensitive

__all__ = [
    "REASONS",
    "Event",
    "Rejected",
    "canonical",
    "format_ms",
    "normalize",
    "parse_action",
    "timestamp",
    "timestamp_ms",
]

Event = dict[str, Any]

#: Prices and amounts: at most 12 integer digits (a trillion), so no card number passes as one.
_DECIMAL = re.compile(
    r"-?[0-9]{1,12}(\.[0-9]{1,8})?"
)  # ASCII digits: `\d` matches any Unicode digit
_CURRENCY = re.compile(r"[A-Z]{3}")
#: RFC 3339 date-time (section 5.6; a space may replace the T, as its note allows). Checked before
#: `datetime.fromisoformat`, which also takes forms RFC 3339 does not (`+01`, `+0100`, `+01:99`,
#: week dates, a comma before the fraction, offsets with seconds, no seconds at all).
_RFC3339 = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
#: orjson reads an integer beyond 64 bits as a float (2^64 becomes 1.8446744073709552e+19), so a
#: message holding a run of this many digits is read again by `json`, which keeps integers exact.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_TOP_LEVEL = frozenset(
    {
        "event_id",
        "occurred_at",
        "account_id",
        "marketplace",
        "actor",
        "source",
        "action",
        "operation",
        "resource",
        "changes",
        "amount",
        "outcome",
        "approval_id",
        "grant",
        "approval",
        "policy",
        "origin",
    }
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_action(raw: bytes, max_bytes: int = 65536) -> Event:
    """Validate one ingest message and return the normalized event, or raise `Rejected`."""
    if len(raw) > max_bytes:
        raise Rejected("too_large", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("bad_encoding", "message is not valid UTF-8") from None
        if "infinity" in str(exc):  # a number literal beyond a double's range (1e400, 400 digits)
            raise Rejected("bad_value", "a number is out of range") from None
        raise Rejected("not_json", str(exc)) from None
    if _LONG_DIGITS.search(raw):
        doc = _exact_integers(raw)
    return normalize(doc)


def _exact_integers(raw: bytes) -> Any:
    """`raw` (already read by orjson, so strict JSON) read again with integers kept exact."""
    try:
        return json.loads(raw)
    except (RecursionError, ValueError):  # deeper than Python's stack; more digits than int() reads
        raise Rejected(
            "bad_value", "a number is out of range, or the message nests too deeply"
        ) from None


def normalize(doc: Any) -> Event:
    """Validate a decoded ProviderAction and return it in canonical form."""
    if not isinstance(doc, dict):
        raise Rejected("not_object", f"expected a JSON object, got {type_name(doc)}")
    unknown = doc.keys() - _TOP_LEVEL
    if unknown:
        raise Rejected("unknown_field", f"unknown field(s): {', '.join(sorted(unknown)[:5])}")

    action = string(doc, "action", required=True)
    if action not in ACTIONS:
        raise Rejected("unknown_action", f"action {action[:80]!r} is not in the vocabulary")
    event_id = identifier(doc, "event_id", "event", required=True)
    account_id = identifier(doc, "account_id", "account", required=True, max_len=64)
    found = find_sensitive(account_id)
    if found:  # the account is the chain's identity and the Kafka key: never masked, so refused
        raise Rejected("bad_value", f"account_id holds what looks like {found}")

    out: Event = {
        "event_id": event_id,
        "occurred_at": timestamp(doc.get("occurred_at"), "occurred_at"),
        "account_id": account_id,
        "action": action,
        "actor": _actor(doc.get("actor")),
        "outcome": "success",
    }

    marketplace = string(doc, "marketplace", required=needs_marketplace(action), max_len=16)
    if marketplace is not None:
        if site_code(marketplace) is None:
            raise Rejected(
                "bad_value",
                f"marketplace {marketplace!r} is not a known site code or marketplace ID",
            )
        out["marketplace"] = site_code(
            marketplace
        )  # stored as the site code (pipeline/marketplaces.py)
    if "source" in doc:
        out["source"] = _source(doc["source"])
    for name, kind in (("operation", "label"), ("approval_id", "name")):
        value = identifier(doc, name, kind)
        if value is not None:
            out[name] = value
    if "resource" in doc:
        resource = obj(doc["resource"], "resource", frozenset({"type", "id"}))
        out["resource"] = {
            f: resource[f]
            for f in ("type", "id")
            if identifier(resource, f, "label", max_len=MAX_STR, where="resource.") is not None
        }
    if "changes" in doc:
        out["changes"] = _changes(doc["changes"])
    if "amount" in doc or action in AMOUNT_REQUIRED:
        out["amount"] = _amount(need(doc, "amount"))
    outcome = string(doc, "outcome")
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise Rejected("bad_value", "outcome must be success, failure or denied")
        out["outcome"] = outcome
    if action in ("permission.grant", "permission.revoke") or "grant" in doc:
        out["grant"] = grant_schema.grant(
            need(doc, "grant"), revoke=action == "permission.revoke", timestamp=timestamp
        )
    if action == "approval.grant" or "approval" in doc:
        out["approval"] = grant_schema.approval(need(doc, "approval"), timestamp=timestamp)
    if action == "policy.update" or "policy" in doc:
        out["policy"] = grant_schema.policy(need(doc, "policy"))
    if "origin" in doc:
        try:
            out["origin"] = check_origin(doc["origin"])
        except ValueError as exc:
            raise Rejected(*exc.args) from None
        check_numbers(out["origin"], "origin")
    return out


def canonical(event: Event) -> bytes:
    """Canonical serialization: UTF-8 JSON, sorted keys, no whitespace. The hash chain covers it."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def timestamp(value: Any, name: str) -> str:
    """Parse an RFC 3339 timestamp with an offset; return UTC with millisecond precision."""
    return format_ms(timestamp_ms(value, name))


def timestamp_ms(value: Any, name: str) -> int:
    """Parse an RFC 3339 timestamp with an offset into epoch milliseconds (UTC)."""
    if value is None:
        raise Rejected("missing_field", f"{name} is required")
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{name} must be an RFC 3339 string, got {type_name(value)}")
    if len(value) > 40 or not _RFC3339.fullmatch(value):
        raise Rejected("bad_timestamp", f"{name} {value[:40]!r} is not RFC 3339")
    try:
        parsed = datetime.fromisoformat(value.upper().replace(" ", "T"))
    except ValueError:
        raise Rejected("bad_timestamp", f"{name} {value!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise Rejected("bad_timestamp", f"{name} {value!r} has no UTC offset")
    # Both the local and the UTC year: the stored UTC value must itself pass this check again.
    if not (1970 <= parsed.year <= 2200 and 1970 <= parsed.astimezone(UTC).year <= 2200):
        raise Rejected("bad_timestamp", f"{name} {value!r} is out of range")
    delta = parsed - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


#: `mmmZ` for each millisecond of a second (`format_ms`: a lookup costs less than formatting).
_MILLIS = tuple(f"{millis:03d}Z" for millis in range(1000))


def format_ms(ms: int) -> str:
    """Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    seconds = ms // 1000
    return _second_prefix(seconds) + _MILLIS[ms - seconds * 1000]


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.` of an epoch second: events arrive close in time, so most calls hit."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


# -- field helpers ------------------------------------------------------------------------------


def _actor(value: Any) -> dict[str, str]:
    if value is None:
        raise Rejected("missing_field", "actor is required")
    actor = obj(value, "actor", frozenset({"type", "provider_id", "principal_id"}))
    kind = string(actor, "type", required=True, where="actor.")
    if kind not in ACTOR_TYPES:
        raise Rejected("bad_value", "actor.type must be provider, seller or amazon")
    out = {
        "type": kind,
        "principal_id": identifier(actor, "principal_id", "name", required=True, where="actor."),
    }
    provider = identifier(actor, "provider_id", "name", required=kind == "provider", where="actor.")
    if provider is not None:
        out["provider_id"] = provider
    return out


def _ip(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{name} must be a string, got {type_name(value)}")
    # Longer than any address text: refused before the cache, which must not hold large keys.
    canonical_ip = _canonical_ip(value) if len(value) <= 64 else None
    if canonical_ip is None:
        raise Rejected("bad_value", f"{name} {value[:64]!r} is not an IPv4 or IPv6 address")
    return canonical_ip


#: `_canonical_ip`'s results (pipeline/memo.py: sources repeat).
_CANONICAL_IPS: Final = Memo(65536)


def _canonical_ip(value: str) -> str | None:
    """The canonical text of an IP address, None if `value` is not one (memoized: sources
    repeat)."""
    found = _CANONICAL_IPS.get(value)
    if found is MISSING:
        found = _CANONICAL_IPS.put(value, _canonical_ip_of(value))
    canonical: str | None = found
    return canonical


def _canonical_ip_of(value: str) -> str | None:
    if "%" in value:  # an IPv6 zone id names a host's interface, not a source address
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        # RFC 5952 section 5 form; str() gives ::ffff:c000:201 before Python 3.13, ::ffff:192.0.2.1 after.
        return f"::ffff:{mapped}"
    return str(address)


#: The canonical text of an IP address, or None (pipeline/action_decoder.py uses the same cache).
canonical_ip = _canonical_ip


def _source(value: Any) -> dict[str, str]:
    src = obj(value, "source", frozenset({"ip", "user_agent", "session_id"}))
    out: dict[str, str] = {}
    if src.get("ip") is not None:
        out["ip"] = _ip(src["ip"], "source.ip")
    for name in ("user_agent", "session_id"):
        text = identifier(
            src,
            name,
            "user_agent" if name == "user_agent" else "session",
            max_len=MAX_STR,
            where="source.",
        )
        if text is not None:
            out[name] = text
    return out


def _scalar(value: Any, name: str) -> Any:
    if isinstance(value, (dict, list)):
        raise Rejected("wrong_type", f"{name} must be a string, number, boolean or null")
    if isinstance(value, str) and len(value) > MAX_STR * 8:
        raise Rejected("bad_value", f"{name} is longer than {MAX_STR * 8} characters")
    check_int(value, name)
    return value


def _changes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Rejected("wrong_type", f"changes must be an array, got {type_name(value)}")
    if len(value) > MAX_LIST:
        raise Rejected("bad_value", f"changes has more than {MAX_LIST} entries")
    out = []
    for i, item in enumerate(value):
        change = obj(item, f"changes[{i}]", frozenset({"field", "old", "new"}))
        field = identifier(change, "field", "label", required=True, where=f"changes[{i}].")
        old = _scalar(change.get("old"), f"changes[{i}].old")
        new = _scalar(change.get("new"), f"changes[{i}].new")
        if field == "price":
            for label, price in (("old", old), ("new", new)):
                if price is not None and not (isinstance(price, str) and _DECIMAL.fullmatch(price)):
                    raise Rejected(
                        "bad_value", f"changes[{i}].{label} price must be a decimal string"
                    )
        out.append({"field": field, "old": old, "new": new})
    return out


def _amount(value: Any) -> dict[str, str]:
    amount = obj(value, "amount", frozenset({"value", "currency"}))
    number = string(amount, "value", required=True, max_len=32, where="amount.")
    if not _DECIMAL.fullmatch(number):
        raise Rejected(
            "bad_value",
            "amount.value must be a decimal string such as '120.50' (at most 12 digits before the point)",
        )
    currency = string(amount, "currency", required=True, max_len=3, where="amount.")
    if not _CURRENCY.fullmatch(currency):
        raise Rejected("bad_value", "amount.currency must be an ISO 4217 code such as 'EUR'")
    return {"value": number, "currency": currency}
