"""The grant events the `grants` commands send: `permission.grant` and `permission.revoke`, built
from command options or an import file's rows and checked with the worker's own validator.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.contract import ACTIONS, action_matches
from pipeline.event import Rejected, format_ms, normalize

#: Columns of an import file (CSV header or YAML keys); list cells in CSV are separated by spaces, `;` or `|`.
FIELDS = (
    "account",
    "provider",
    "principals",
    "scopes",
    "marketplaces",
    "ip_allowlist",
    "expires",
    "grant_id",
    "max_price_change_pct",
    "require_approval",
    "skus",
)
LIST_FIELDS = ("principals", "scopes", "marketplaces", "ip_allowlist", "require_approval", "skus")
#: Who the grant events name as the acting seller principal when --by is not given.
DEFAULT_BY = "partnerwatch-cli"


class GrantError(ValueError):
    """A grant that cannot be sent: a missing or bad field."""


def now_text() -> str:
    return format_ms(time.time_ns() // 1_000_000)


def _when(text: str, field: str) -> str:
    from pipeline.forensics.chain_check import parse_when

    try:
        return format_ms(parse_when(text))
    except ValueError:
        raise GrantError(
            f"{field}: a date (2027-01-31) or an RFC 3339 time, not {text!r}"
        ) from None


def _list(value: Any, field: str) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items = value.replace(";", " ").replace("|", " ").replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        raise GrantError(f"{field}: a list, not {type(value).__name__}")
    return [i for i in items if i] or None


def grant_event(row: dict[str, Any], by: str) -> dict[str, Any]:
    """One import row (or the options of `grants add`) as a validated permission.grant event."""
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise GrantError(
            f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(FIELDS)}"
        )
    account = str(row.get("account") or "").strip()
    provider = str(row.get("provider") or "").strip()
    if not account:
        raise GrantError("account: required")
    if not provider:
        raise GrantError("provider: required")
    scopes = _list(row.get("scopes"), "scopes")
    if not scopes:
        raise GrantError("scopes: at least one action pattern (listing.*, inventory.update, ...)")
    grant: dict[str, Any] = {
        "grant_id": str(row.get("grant_id") or "").strip()
        or f"g-{provider}-{uuid.uuid4().hex[:8]}",
        "provider_id": provider,
        "scopes": scopes,
    }
    for field in ("principals", "marketplaces", "ip_allowlist", "require_approval", "skus"):
        if (items := _list(row.get(field), field)) is not None:
            grant[field] = items
    for field in ("scopes", "require_approval"):
        for pattern in grant.get(field, ()):
            if not any(action_matches(pattern, action) for action in ACTIONS):
                raise GrantError(
                    f"{field}: {pattern!r} names no action (listing.*, inventory.update, ...: docs/contract.md)"
                )
    if row.get("expires") not in (None, ""):
        grant["valid_until"] = _when(str(row["expires"]), "expires")
    if row.get("max_price_change_pct") not in (None, ""):
        try:
            grant["max_price_change_pct"] = float(row["max_price_change_pct"])
        except (TypeError, ValueError):
            raise GrantError(
                f"max_price_change_pct: a number, not {row['max_price_change_pct']!r}"
            ) from None
    return _checked(
        {
            "event_id": f"cli-grant-{uuid.uuid4().hex}",
            "occurred_at": now_text(),
            "account_id": account,
            "actor": {"type": "seller", "principal_id": by},
            "action": "permission.grant",
            "grant": grant,
        }
    )


def revoke_event(account: str, grant_id: str, by: str) -> dict[str, Any]:
    return _checked(
        {
            "event_id": f"cli-revoke-{uuid.uuid4().hex}",
            "occurred_at": now_text(),
            "account_id": account,
            "actor": {"type": "seller", "principal_id": by},
            "action": "permission.revoke",
            "grant": {"grant_id": grant_id},
        }
    )


def _checked(event: dict[str, Any]) -> dict[str, Any]:
    """The worker's validator on the event: it is sent as built, only if it would be accepted."""
    try:
        normalize(event)
    except Rejected as exc:
        raise GrantError(f"{exc.reason}: {exc.detail}") from None
    return event


def read_import(file: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (header: FIELDS) or a YAML file (a list of mappings, or `grants:` list)."""
    text = file.read_text(encoding="utf-8-sig")
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GrantError(f"not YAML: {str(exc).splitlines()[0]}") from None
        if isinstance(doc, dict) and "grants" in doc:
            doc = doc["grants"]
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise GrantError(
                "YAML: a list of grants (mappings), or a mapping with a `grants:` list"
            )
        return [{str(k): v for k, v in r.items()} for r in doc]
    if file.suffix.lower() != ".csv":
        raise GrantError("give a .csv, .yaml or .yml file")
    reader = csv.DictReader(io.StringIO(text))
    return [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
