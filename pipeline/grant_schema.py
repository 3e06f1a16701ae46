"""Validation of the authorization payloads: `grant`, `approval` and `policy` (see docs/contract.md).

These carry the seller's delegation decisions, which `pipeline.authorization` folds into the
state detectors check against. `pipeline.event.normalize` calls them; the JSON Schema states the
same rules where a schema can.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.identifiers import check, identifier
from pipeline.marketplaces import site_code
from pipeline.rejection import MAX_LIST, Rejected, check_numbers, obj, serialized_size, string

_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")

GRANT_FIELDS = frozenset(
    {
        "grant_id",
        "provider_id",
        "principals",
        "scopes",
        "marketplaces",
        "ip_allowlist",
        "max_price_change_pct",
        "require_approval",
        "active_hours",
        "valid_until",
        "skus",
    }
)
#: The grammar of each list of a grant (marketplaces and networks are checked otherwise).
_LISTS = {
    "principals": "name",
    "scopes": "action_pattern",
    "require_approval": "action_pattern",
    "skus": "label",
}


def string_list(value: Any, name: str, kind: str | None = None) -> list[str]:
    """An array of at most 1000 strings of 1-256 characters, each fitting `kind` if given."""
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise Rejected("wrong_type", f"{name} must be an array of at most {MAX_LIST} strings")
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item) <= 256:
            raise Rejected("wrong_type", f"{name} must hold strings of 1-256 characters")
    if kind is not None:
        for item in value:
            check(item, kind, f"{name}[]")
    return list(value)


def grant(value: Any, *, revoke: bool, timestamp: Any) -> dict[str, Any]:
    """The normalized grant; `timestamp(value, name)` normalizes `valid_until`."""
    doc = obj(value, "grant", GRANT_FIELDS)
    out: dict[str, Any] = {
        "grant_id": identifier(doc, "grant_id", "name", required=True, where="grant.")
    }
    provider = identifier(doc, "provider_id", "name", required=not revoke, where="grant.")
    if provider is not None:
        out["provider_id"] = provider
    for name, kind in _LISTS.items():
        if doc.get(name) is not None:
            out[name] = string_list(doc[name], f"grant.{name}", kind)
    if doc.get("marketplaces") is not None:
        sites = string_list(doc["marketplaces"], "grant.marketplaces")
        bad = [s for s in sites if site_code(s) is None]
        if bad:
            raise Rejected("bad_value", f"grant.marketplaces has unknown site code(s): {bad[:3]}")
        out["marketplaces"] = [site_code(s) for s in sites]
    if doc.get("ip_allowlist") is not None:
        nets = []
        for cidr in string_list(doc["ip_allowlist"], "grant.ip_allowlist"):
            try:
                nets.append(str(ipaddress.ip_network(cidr, strict=False)))
            except ValueError:
                raise Rejected(
                    "bad_value", f"grant.ip_allowlist entry {cidr[:64]!r} is not a CIDR"
                ) from None
        out["ip_allowlist"] = nets
    pct = doc.get("max_price_change_pct")
    if pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 10000:
            raise Rejected(
                "bad_value", "grant.max_price_change_pct must be a number from 0 to 10000"
            )
        out["max_price_change_pct"] = pct
    if doc.get("active_hours") is not None:
        out["active_hours"] = _active_hours(doc["active_hours"])
    if doc.get("valid_until") is not None:
        out["valid_until"] = timestamp(doc["valid_until"], "grant.valid_until")
    return out


def _active_hours(value: Any) -> dict[str, str]:
    hours = obj(value, "grant.active_hours", frozenset({"tz", "start", "end"}))
    tz = identifier(
        hours, "tz", "time_zone", required=True, max_len=64, where="grant.active_hours."
    )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata folder, e.g. "America"
        raise Rejected(
            "bad_value", f"grant.active_hours.tz {tz!r} is not an IANA time zone"
        ) from None
    out = {"tz": tz}
    for name in ("start", "end"):
        hhmm = string(hours, name, required=True, max_len=5, where="grant.active_hours.")
        if not _HHMM.fullmatch(hhmm):
            raise Rejected("bad_value", f"grant.active_hours.{name} must be HH:MM")
        out[name] = hhmm
    return out


#: approval field -> (grammar, required)
_APPROVAL = {
    "approval_id": ("name", True),
    "action": ("action_pattern", True),
    "resource_id": ("label", False),
    "approved_by": ("name", True),
}


def approval(value: Any, *, timestamp: Any) -> dict[str, str]:
    """The normalized approval; `timestamp(value, name)` normalizes `expires_at`."""
    doc = obj(value, "approval", frozenset({*_APPROVAL, "expires_at"}))
    out = {}
    for name, (kind, required) in _APPROVAL.items():
        text = identifier(doc, name, kind, required=required, where="approval.")
        if text is not None:
            out[name] = text
    expires = string(doc, "expires_at", required=True, max_len=128, where="approval.")
    out["expires_at"] = timestamp(expires, "approval.expires_at")
    return out


def policy(value: Any) -> dict[str, Any]:
    """The policy object (extra keys allowed), with its known settings checked."""
    doc = dict(obj(value, "policy", None))
    rate = doc.get("rate_limit_per_min")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate <= 1_000_000
    ):
        raise Rejected("bad_value", "policy.rate_limit_per_min must be a positive integer")
    filings = doc.get("tax_filings")
    if filings is not None:
        if not isinstance(filings, list) or len(filings) > 100:
            raise Rejected("wrong_type", "policy.tax_filings must be an array")
        for i, item in enumerate(filings):
            filing = obj(
                item, f"policy.tax_filings[{i}]", frozenset({"marketplace", "cadence", "due_day"})
            )
            if site_code(filing.get("marketplace")) is None:
                raise Rejected(
                    "bad_value", f"policy.tax_filings[{i}].marketplace is not a site code"
                )
            if filing.get("cadence") not in ("monthly", "quarterly"):
                raise Rejected(
                    "bad_value", f"policy.tax_filings[{i}].cadence must be monthly or quarterly"
                )
            day = filing.get("due_day")
            if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 31:
                raise Rejected("bad_value", f"policy.tax_filings[{i}].due_day must be 1-31")
        doc["tax_filings"] = [{**f, "marketplace": site_code(f["marketplace"])} for f in filings]
    size = serialized_size(doc)
    if size is None:  # nested too deeply to be written inside an event, or a huge integer
        raise Rejected("bad_value", "policy cannot be serialized (nested too deeply?)")
    if size > 16384:
        raise Rejected("bad_value", "policy is larger than 16 KiB")
    check_numbers(doc, "policy")
    return doc
