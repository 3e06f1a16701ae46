"""Ledger entries and alerts as `audit.events` / `audit.alerts` rows, stored without duplicates.

`event_row` lives in pipeline/audit_row.py: `verify-chain` recomputes the derived columns with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from pipeline.audit_row import ch_time, event_row
from sinks.clickhouse import Row, Warehouse

__all__ = ["BadRecord", "alert_row", "ch_time", "checked_alert", "checked_entry", "event_row", "store_alerts", "store_events"]


def alert_row(alert: dict[str, Any]) -> Row:
    return {
        "alert_id": alert["alert_id"],
        "detector": alert["detector"],
        "severity": alert["severity"],
        "account_id": alert["account_id"],
        "provider_id": alert.get("provider_id", ""),
        "principal_id": alert.get("principal_id", ""),
        "title": alert["title"],
        "summary": alert["summary"],
        "evidence_event_ids": list(alert["evidence_event_ids"]),
        "first_seen": ch_time(alert["first_seen"]),
        "last_seen": ch_time(alert["last_seen"]),
        "count": int(alert["count"]),
        "response": list(alert["response"]),
    }


def store_events(warehouse: Warehouse, entries: Sequence[dict[str, Any]]) -> int:
    """Insert ledger entries not yet stored; return how many rows were written.

    A row is a ledger entry, keyed by `(account_id, seq)`. Redelivery after a crash repeats
    entries already stored (same seq); they are skipped here, so `count()` over audit.events is
    the number of ledger entries without FINAL. A late repeat of an event_id (after the dedup
    window) is a new entry with a new seq and is stored: `uniqExact(event_id)` counts events.
    Stored entries are found through the event_id bloom filter (a redelivered entry has the same
    event_id), then matched by seq.
    """
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in entries:
        unique.setdefault((entry["account_id"], int(entry["seq"])), entry)
    if not unique:
        return 0
    stored = warehouse.query(
        "SELECT account_id, seq FROM audit.events WHERE event_id IN {ids:Array(String)}",
        {"ids": sorted({e["event_id"] for e in unique.values()})},
    )
    for account_id, seq in stored.rows:
        unique.pop((account_id, int(seq)), None)
    rows = [event_row(e) for e in unique.values()]
    warehouse.insert("audit.events", rows)
    return len(rows)


def store_alerts(warehouse: Warehouse, alerts: Sequence[dict[str, Any]]) -> int:
    """Insert alert versions; the table keeps the one with the most evidence per alert_id."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        seen = latest.get(alert["alert_id"])
        if seen is None or int(alert["count"]) >= int(seen["count"]):
            latest[alert["alert_id"]] = alert
    warehouse.insert("audit.alerts", [alert_row(a) for a in latest.values()])
    return len(latest)


# -- records from the topics, checked before they join a batch -----------------------------------


class BadRecord(ValueError):
    """A ledger or alerts record the warehouse cannot store; `reason` is a dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_CH_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}")
_HASH = re.compile(r"[0-9a-f]{64}")
_EVENT_TIMES = ("occurred_at", "ingested_at")
_EVENT_INTS = ("seq", "entry_seq")
_ALERT_TIMES = ("first_seen", "last_seen")


def checked_entry(raw: bytes | None) -> dict[str, Any]:
    """A ledger record as an entry `store_events` can store, or `BadRecord`."""
    entry = _json_object(raw)
    row = _row(event_row, entry)
    for name, value in row.items():
        if name in _EVENT_INTS:
            _int(name, value, 1, 2**64)
        elif not isinstance(value, str):
            raise BadRecord("wrong_type", f"{name} must be a string")
        elif name in _EVENT_TIMES and not _CH_TIME.fullmatch(value):
            raise BadRecord("bad_timestamp", f"{name} is not a ledger timestamp")
        elif name in ("prev_hash", "hash") and not _HASH.fullmatch(value):
            raise BadRecord("bad_value", f"{name} is not a SHA-256 hex digest")
    return entry


def checked_alert(raw: bytes | None) -> dict[str, Any]:
    """An alerts record as an alert `store_alerts` can store, or `BadRecord`."""
    alert = _json_object(raw)
    row = _row(alert_row, alert)
    for name, value in row.items():
        if name == "count":
            _int(name, alert["count"], 0, 2**32)
        elif isinstance(value, list):
            if not isinstance(alert[name], list) or not all(isinstance(v, str) for v in value):
                raise BadRecord("wrong_type", f"{name} must be an array of strings")
        elif not isinstance(value, str):
            raise BadRecord("wrong_type", f"{name} must be a string")
        elif name in _ALERT_TIMES and not _CH_TIME.fullmatch(value):
            raise BadRecord("bad_timestamp", f"{name} is not a timestamp")
    return alert


def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise BadRecord("not_object", "expected a JSON object")
    return doc


def _row(build: Callable[[dict[str, Any]], Row], doc: dict[str, Any]) -> Row:
    try:
        return build(doc)
    except KeyError as exc:
        raise BadRecord("missing_field", f"{exc.args[0]} is required") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise BadRecord("wrong_type", str(exc)[:200]) from None


def _int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord("wrong_type", f"{name} must be an integer")
    if not low <= value < high:
        raise BadRecord("bad_value", f"{name} is out of range")
