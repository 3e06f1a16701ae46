"""Ledger entries and alerts as `audit.events` / `audit.alerts` rows, stored without duplicates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.event import canonical
from pipeline.ledger import event_of
from sinks.clickhouse import Row, Warehouse


def ch_time(ts: str) -> str:
    """`2026-01-02T03:04:05.678Z` -> `2026-01-02 03:04:05.678` (ClickHouse's basic input format)."""
    return f"{ts[:10]} {ts[11:23]}"


def event_row(entry: dict[str, Any]) -> Row:
    """One `audit.events` row from a ledger entry."""
    actor = entry["actor"]
    source = entry.get("source", {})
    resource = entry.get("resource", {})
    amount = entry.get("amount", {})
    changes = entry.get("changes")
    return {
        "event_id": entry["event_id"],
        "account_id": entry["account_id"],
        "seq": entry["seq"],
        "occurred_at": ch_time(entry["occurred_at"]),
        "ingested_at": ch_time(entry["ingested_at"]),
        "action": entry["action"],
        "marketplace": entry.get("marketplace", ""),
        "actor_type": actor["type"],
        "provider_id": actor.get("provider_id", ""),
        "principal_id": actor["principal_id"],
        "source_ip": source.get("ip", ""),
        "user_agent": source.get("user_agent", ""),
        "session_id": source.get("session_id", ""),
        "operation": entry.get("operation", ""),
        "resource_type": resource.get("type", ""),
        "resource_id": resource.get("id", ""),
        "outcome": entry["outcome"],
        "approval_id": entry.get("approval_id", ""),
        "amount_value": amount.get("value", ""),
        "amount_currency": amount.get("currency", ""),
        "changes": orjson.dumps(changes).decode() if changes is not None else "",
        "prev_hash": entry["prev_hash"],
        "hash": entry["hash"],
        "payload": canonical(event_of(entry)).decode(),
    }


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

    Redelivery after a crash repeats entries already stored; they are skipped here by `event_id`
    (scoped to the account), so `count()` over audit.events stays exact without FINAL.
    """
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        unique.setdefault((entry["account_id"], entry["event_id"]), entry)
    if not unique:
        return 0
    stored = warehouse.query(
        "SELECT account_id, event_id FROM audit.events WHERE event_id IN {ids:Array(String)}",
        {"ids": sorted({event_id for _, event_id in unique})},
    )
    for account_id, event_id in stored.rows:
        unique.pop((account_id, event_id), None)
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
