"""Where an ingest event (ProviderAction) is validated and normalized: the one gate into the ledger.

`parse_action` takes the raw bytes of a Kafka message and returns the normalized event as a plain
dict (cheap to build, cheap to serialize), or raises `Rejected` with a machine-readable reason that
the ingest agent writes to the dead-letter topic. The rules mirror `schema/provider_action.schema.json`
and docs/contract.md; `tests/unit/test_event.py` keeps the schema and this module in step,
`tests/unit/test_docs.py` the page.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from pipeline.contract import (
    ACTIONS,
    ACTOR_TYPES,
    AMOUNT_REQUIRED,
    OUTCOMES,
    needs_marketplace,
)
from pipeline.marketplaces import site_code
from pipeline.origin import check_origin

Event = dict[str, Any]

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

_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DECIMAL = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,8})?")  # ASCII digits: `\d` matches any Unicode digit
_CURRENCY = re.compile(r"[A-Z]{3}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
#: RFC 3339 date-time (section 5.6; a space may replace the T, as its note allows). Checked before
#: `datetime.fromisoformat`, which also takes forms RFC 3339 does not (`+01`, `+0100`, `+01:99`,
#: week dates, a comma before the fraction, offsets with seconds, no seconds at all).
_RFC3339 = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_TOP_LEVEL = frozenset(
    {
        "event_id", "occurred_at", "account_id", "marketplace", "actor", "source", "action",
        "operation", "resource", "changes", "amount", "outcome", "approval_id", "grant",
        "approval", "policy", "origin",
    }
)
_MAX_STR = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LIST = 1000


class Rejected(ValueError):
    """An ingest message that breaks the contract; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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
        raise Rejected("not_json", str(exc)) from None
    return normalize(doc)


def normalize(doc: Any) -> Event:
    """Validate a decoded ProviderAction and return it in canonical form."""
    if not isinstance(doc, dict):
        raise Rejected("not_object", f"expected a JSON object, got {_type(doc)}")
    unknown = doc.keys() - _TOP_LEVEL
    if unknown:
        raise Rejected("unknown_field", f"unknown field(s): {', '.join(sorted(unknown)[:5])}")

    action = _str(doc, "action", required=True)
    if action not in ACTIONS:
        raise Rejected("unknown_action", f"action {action[:80]!r} is not in the vocabulary")
    event_id = _str(doc, "event_id", required=True)
    if not _EVENT_ID.fullmatch(event_id):
        raise Rejected("bad_value", "event_id must be 1-128 characters of [A-Za-z0-9._:-]")
    account_id = _str(doc, "account_id", required=True, max_len=64)

    out: Event = {
        "event_id": event_id,
        "occurred_at": timestamp(doc.get("occurred_at"), "occurred_at"),
        "account_id": account_id,
        "action": action,
        "actor": _actor(doc.get("actor")),
        "outcome": "success",
    }

    marketplace = _str(doc, "marketplace", required=needs_marketplace(action), max_len=16)
    if marketplace is not None:
        if site_code(marketplace) is None:
            raise Rejected("bad_value", f"marketplace {marketplace!r} is not a known site code or marketplace ID")
        out["marketplace"] = site_code(marketplace)  # stored as the site code (pipeline/marketplaces.py)
    if "source" in doc:
        out["source"] = _source(doc["source"])
    for name in ("operation", "approval_id"):
        value = _str(doc, name, max_len=128)
        if value is not None:
            out[name] = value
    if "resource" in doc:
        out["resource"] = _object_of_strings(doc["resource"], "resource", ("type", "id"))
    if "changes" in doc:
        out["changes"] = _changes(doc["changes"])
    if "amount" in doc or action in AMOUNT_REQUIRED:
        out["amount"] = _amount(_need(doc, "amount"))
    outcome = _str(doc, "outcome")
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise Rejected("bad_value", "outcome must be success, failure or denied")
        out["outcome"] = outcome
    if action in ("permission.grant", "permission.revoke") or "grant" in doc:
        out["grant"] = _grant(_need(doc, "grant"), revoke=action == "permission.revoke")
    if action == "approval.grant" or "approval" in doc:
        out["approval"] = _approval(_need(doc, "approval"))
    if action == "policy.update" or "policy" in doc:
        out["policy"] = _policy(_need(doc, "policy"))
    if "origin" in doc:
        try:
            out["origin"] = check_origin(doc["origin"])
        except ValueError as exc:
            raise Rejected(*exc.args) from None
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
        raise Rejected("wrong_type", f"{name} must be an RFC 3339 string, got {_type(value)}")
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


def format_ms(ms: int) -> str:
    """Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_prefix(seconds)}{millis:03d}Z"


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.` of an epoch second: events arrive close in time, so most calls hit."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


# -- field helpers ------------------------------------------------------------------------------


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _need(doc: dict[str, Any], name: str) -> Any:
    if doc.get(name) is None:
        raise Rejected("missing_field", f"{name} is required for action {doc.get('action')}")
    return doc[name]


def _str(
    doc: dict[str, Any], name: str, *, required: bool = False, max_len: int = _MAX_STR, where: str = ""
) -> Any:
    value = doc.get(name)
    label = f"{where}{name}"
    if value is None:
        if required:
            raise Rejected("missing_field", f"{label} is required")
        return None
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{label} must be a string, got {_type(value)}")
    if not 1 <= len(value) <= max_len:
        raise Rejected("bad_value", f"{label} must be 1-{max_len} characters")
    return value


def _object(value: Any, name: str, allowed: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected("wrong_type", f"{name} must be an object, got {_type(value)}")
    if allowed is not None:
        unknown = value.keys() - allowed
        if unknown:
            raise Rejected("unknown_field", f"unknown field(s) in {name}: {', '.join(sorted(unknown)[:5])}")
    return value


def _actor(value: Any) -> dict[str, str]:
    if value is None:
        raise Rejected("missing_field", "actor is required")
    actor = _object(value, "actor", frozenset({"type", "provider_id", "principal_id"}))
    kind = _str(actor, "type", required=True, where="actor.")
    if kind not in ACTOR_TYPES:
        raise Rejected("bad_value", "actor.type must be provider, seller or amazon")
    out = {"type": kind, "principal_id": _str(actor, "principal_id", required=True, max_len=128, where="actor.")}
    provider = _str(actor, "provider_id", required=kind == "provider", max_len=128, where="actor.")
    if provider is not None:
        out["provider_id"] = provider
    return out


def _ip(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{name} must be a string, got {_type(value)}")
    # Longer than any address text: refused before the cache, which must not hold large keys.
    canonical_ip = _canonical_ip(value) if len(value) <= 64 else None
    if canonical_ip is None:
        raise Rejected("bad_value", f"{name} {value[:64]!r} is not an IPv4 or IPv6 address")
    return canonical_ip


@lru_cache(maxsize=65536)
def _canonical_ip(value: str) -> str | None:
    """The canonical text of an IP address, None if `value` is not one (cached: sources repeat)."""
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


def _source(value: Any) -> dict[str, str]:
    src = _object(value, "source", frozenset({"ip", "user_agent", "session_id"}))
    out: dict[str, str] = {}
    if src.get("ip") is not None:
        out["ip"] = _ip(src["ip"], "source.ip")
    for name in ("user_agent", "session_id"):
        text = _str(src, name, where="source.")
        if text is not None:
            out[name] = text
    return out


def _object_of_strings(value: Any, name: str, fields: tuple[str, ...]) -> dict[str, str]:
    obj = _object(value, name, frozenset(fields))
    return {f: obj[f] for f in fields if _str(obj, f, where=f"{name}.") is not None}


def _scalar(value: Any, name: str) -> Any:
    if isinstance(value, (dict, list)):
        raise Rejected("wrong_type", f"{name} must be a string, number, boolean or null")
    if isinstance(value, str) and len(value) > _MAX_STR * 8:
        raise Rejected("bad_value", f"{name} is longer than {_MAX_STR * 8} characters")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise Rejected("bad_value", f"{name} is out of range")
    return value


def _changes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Rejected("wrong_type", f"changes must be an array, got {_type(value)}")
    if len(value) > _MAX_LIST:
        raise Rejected("bad_value", f"changes has more than {_MAX_LIST} entries")
    out = []
    for i, item in enumerate(value):
        change = _object(item, f"changes[{i}]", frozenset({"field", "old", "new"}))
        field = _str(change, "field", required=True, max_len=128, where=f"changes[{i}].")
        old = _scalar(change.get("old"), f"changes[{i}].old")
        new = _scalar(change.get("new"), f"changes[{i}].new")
        if field == "price":
            for label, price in (("old", old), ("new", new)):
                if price is not None and not (isinstance(price, str) and _DECIMAL.fullmatch(price)):
                    raise Rejected("bad_value", f"changes[{i}].{label} price must be a decimal string")
        out.append({"field": field, "old": old, "new": new})
    return out


def _amount(value: Any) -> dict[str, str]:
    amount = _object(value, "amount", frozenset({"value", "currency"}))
    number = _str(amount, "value", required=True, max_len=32, where="amount.")
    if not _DECIMAL.fullmatch(number):
        raise Rejected("bad_value", "amount.value must be a decimal string such as '120.50'")
    currency = _str(amount, "currency", required=True, max_len=3, where="amount.")
    if not _CURRENCY.fullmatch(currency):
        raise Rejected("bad_value", "amount.currency must be an ISO 4217 code such as 'EUR'")
    return {"value": number, "currency": currency}


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise Rejected("wrong_type", f"{name} must be an array of at most {_MAX_LIST} strings")
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item) <= 256:
            raise Rejected("wrong_type", f"{name} must hold strings of 1-256 characters")
    return list(value)


_GRANT_FIELDS = frozenset(
    {
        "grant_id", "provider_id", "principals", "scopes", "marketplaces", "ip_allowlist",
        "max_price_change_pct", "require_approval", "active_hours", "valid_until", "skus",
    }
)


def _grant(value: Any, *, revoke: bool) -> dict[str, Any]:
    grant = _object(value, "grant", _GRANT_FIELDS)
    out: dict[str, Any] = {"grant_id": _str(grant, "grant_id", required=True, max_len=128, where="grant.")}
    provider = _str(grant, "provider_id", required=not revoke, max_len=128, where="grant.")
    if provider is not None:
        out["provider_id"] = provider
    for name in ("principals", "scopes", "require_approval", "skus"):
        if grant.get(name) is not None:
            out[name] = _string_list(grant[name], f"grant.{name}")
    if grant.get("marketplaces") is not None:
        sites = _string_list(grant["marketplaces"], "grant.marketplaces")
        bad = [s for s in sites if site_code(s) is None]
        if bad:
            raise Rejected("bad_value", f"grant.marketplaces has unknown site code(s): {bad[:3]}")
        out["marketplaces"] = [site_code(s) for s in sites]
    if grant.get("ip_allowlist") is not None:
        nets = []
        for cidr in _string_list(grant["ip_allowlist"], "grant.ip_allowlist"):
            try:
                nets.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise Rejected("bad_value", f"grant.ip_allowlist entry {cidr[:64]!r} is not a CIDR") from None
        out["ip_allowlist"] = nets
    pct = grant.get("max_price_change_pct")
    if pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 10000:
            raise Rejected("bad_value", "grant.max_price_change_pct must be a number from 0 to 10000")
        out["max_price_change_pct"] = pct
    if grant.get("active_hours") is not None:
        out["active_hours"] = _active_hours(grant["active_hours"])
    if grant.get("valid_until") is not None:
        out["valid_until"] = timestamp(grant["valid_until"], "grant.valid_until")
    return out


def _active_hours(value: Any) -> dict[str, str]:
    hours = _object(value, "grant.active_hours", frozenset({"tz", "start", "end"}))
    tz = _str(hours, "tz", required=True, max_len=64, where="grant.active_hours.")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata folder, e.g. "America"
        raise Rejected("bad_value", f"grant.active_hours.tz {tz!r} is not an IANA time zone") from None
    out = {"tz": tz}
    for name in ("start", "end"):
        hhmm = _str(hours, name, required=True, max_len=5, where="grant.active_hours.")
        if not _HHMM.fullmatch(hhmm):
            raise Rejected("bad_value", f"grant.active_hours.{name} must be HH:MM")
        out[name] = hhmm
    return out


def _approval(value: Any) -> dict[str, str]:
    fields = ("approval_id", "action", "resource_id", "approved_by", "expires_at")
    approval = _object(value, "approval", frozenset(fields))
    out = {}
    for name in fields:
        required = name in ("approval_id", "action", "approved_by", "expires_at")
        text = _str(approval, name, required=required, max_len=128, where="approval.")
        if text is not None:
            out[name] = text
    out["expires_at"] = timestamp(out["expires_at"], "approval.expires_at")
    return out


def _policy(value: Any) -> dict[str, Any]:
    policy = dict(_object(value, "policy", None))
    rate = policy.get("rate_limit_per_min")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate <= 1_000_000):
        raise Rejected("bad_value", "policy.rate_limit_per_min must be a positive integer")
    filings = policy.get("tax_filings")
    if filings is not None:
        if not isinstance(filings, list) or len(filings) > 100:
            raise Rejected("wrong_type", "policy.tax_filings must be an array")
        for i, item in enumerate(filings):
            filing = _object(item, f"policy.tax_filings[{i}]", frozenset({"marketplace", "cadence", "due_day"}))
            if site_code(filing.get("marketplace")) is None:
                raise Rejected("bad_value", f"policy.tax_filings[{i}].marketplace is not a site code")
            if filing.get("cadence") not in ("monthly", "quarterly"):
                raise Rejected("bad_value", f"policy.tax_filings[{i}].cadence must be monthly or quarterly")
            day = filing.get("due_day")
            if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31:
                raise Rejected("bad_value", f"policy.tax_filings[{i}].due_day must be 1-31")
        policy["tax_filings"] = [{**f, "marketplace": site_code(f["marketplace"])} for f in filings]
    try:
        size = len(orjson.dumps(policy))
    except orjson.JSONEncodeError:  # deeper than orjson writes (255 levels), or a huge integer
        raise Rejected("bad_value", "policy cannot be serialized (nested too deeply?)") from None
    if size > 16384:
        raise Rejected("bad_value", "policy is larger than 16 KiB")
    return policy
