"""The alert lifecycle in the warehouse: acknowledge, resolve, reopen (`audit.alert_status`).

One row per action, never updated, so the table is the record of who did what and when; the
current status is the latest row's (`argMax(status, at)`), and an alert with no row is open.
Both the worker's HTTP API and `partnerwatch alerts ack|resolve|reopen` (when no worker runs)
come through `record_status`, so the rules are the same on both paths:

| current status            | ack          | resolve  | reopen   |
|---------------------------|--------------|----------|----------|
| open (no row, reopened)   | acknowledged | resolved | conflict |
| acknowledged              | conflict     | resolved | conflict |
| resolved                  | conflict     | conflict | reopened |

A conflict (e.g. resolving a resolved alert) changes nothing and says who set the current
status and when; it is an HTTP 409. Blocking: call it from an executor in async code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sinks.clickhouse import Warehouse

ACTIONS = {"ack": "acknowledged", "resolve": "resolved", "reopen": "reopened"}
ALLOWED_FROM = {
    "acknowledged": {"open"},
    "resolved": {"open", "acknowledged"},
    "reopened": {"resolved"},
}
MAX_ACTOR = 128
MAX_NOTE = 4000


class UnknownAlert(LookupError):
    """No alert with this id (HTTP 404)."""


class StatusConflict(ValueError):
    """The action does not apply to the alert's current status (HTTP 409)."""

    def __init__(self, message: str, current: StatusRow) -> None:
        super().__init__(message)
        self.current = current


class BadRequest(ValueError):
    """A missing or oversized field (HTTP 400)."""


@dataclass(frozen=True)
class StatusRow:
    alert_id: str
    account_id: str
    status: str  # open | acknowledged | resolved | reopened
    actor: str
    note: str
    at: str  # ISO 8601, UTC, milliseconds; "" for an alert never acted on

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ch(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def _iso(text: str) -> str:
    """ClickHouse's `2026-11-26 23:01:02.345` as `2026-11-26T23:01:02.345Z`."""
    return text.replace(" ", "T") + "Z" if text else ""


def validate(action: str, actor: str, note: str) -> None:
    if action not in ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if not actor.strip():
        raise BadRequest("'by' (who acts) is required")
    if len(actor) > MAX_ACTOR or len(note) > MAX_NOTE:
        raise BadRequest(f"'by' is limited to {MAX_ACTOR} characters and 'note' to {MAX_NOTE}")


def current_status(warehouse: Warehouse, alert_id: str, account_hint: str = "") -> StatusRow:
    """The alert's latest lifecycle row, or `open`; UnknownAlert when the id is nowhere.

    `account_hint` is the account of an alert the caller has seen on the alerts topic but the
    warehouse may not have stored yet (the worker's live feed knows alerts before the loader's
    next batch), so a click on a fresh alert is not refused as unknown.
    """
    rows = warehouse.query(
        "SELECT account_id, status, actor, note, toString(at) FROM audit.alert_status"
        " WHERE alert_id = {id:String} ORDER BY at DESC LIMIT 1",
        {"id": alert_id},
    ).rows
    if rows:
        account, status, actor, note, at = rows[0]
        return StatusRow(alert_id, account, status, actor, note, _iso(at))
    account = account_hint
    if not account:
        found = warehouse.query(
            "SELECT account_id FROM audit.alerts WHERE alert_id = {id:String} LIMIT 1",
            {"id": alert_id},
        ).rows
        if not found:
            raise UnknownAlert(f"no alert with id {alert_id!r}")
        account = found[0][0]
    return StatusRow(alert_id, account, "open", "", "", "")


def record_status(
    warehouse: Warehouse,
    alert_id: str,
    action: str,
    actor: str,
    note: str = "",
    account_hint: str = "",
) -> StatusRow:
    """Apply `action` (ack, resolve, reopen) to the alert and store the row; return it.

    Callers serialize calls per warehouse (the worker holds a lock), so the check and the
    insert see the same current status.
    """
    validate(action, actor, note)
    current = current_status(warehouse, alert_id, account_hint)
    status = ACTIONS[action]
    effective = "open" if current.status == "reopened" else current.status
    if effective not in ALLOWED_FROM[status]:
        who = f" by {current.actor} at {current.at}" if current.actor else ""
        raise StatusConflict(
            f"alert {alert_id} is {current.status}{who}: cannot {action} it", current
        )
    now = datetime.now(UTC)
    if current.at:  # strictly after the previous row, so argMax(status, at) has one answer
        previous = datetime.fromisoformat(current.at.replace("Z", "+00:00"))
        now = max(now, previous + timedelta(milliseconds=1))
    at = _ch(now)
    warehouse.insert(
        "audit.alert_status",
        [
            {
                "alert_id": alert_id,
                "account_id": current.account_id,
                "status": status,
                "actor": actor,
                "note": note,
                "at": at,
            }
        ],
    )
    return StatusRow(alert_id, current.account_id, status, actor, note, _iso(at))


def latest_alert(warehouse: Warehouse, alert_id: str) -> dict[str, object] | None:
    """The stored alert with the most evidence (audit.alerts), as the detect agent published it,
    or None when the warehouse has not stored it (yet). For the lifecycle's status record."""
    rows = warehouse.query(
        "SELECT alert_id, detector, severity, account_id, provider_id, principal_id, title, summary,"
        " evidence_event_ids, toString(first_seen), toString(last_seen), count, response"
        " FROM audit.alerts WHERE alert_id = {id:String} ORDER BY count DESC LIMIT 1",
        {"id": alert_id},
    ).rows
    if not rows:
        return None
    (
        aid,
        detector,
        severity,
        account,
        provider,
        principal,
        title,
        summary,
        evidence,
        first,
        last,
        count,
        response,
    ) = rows[0]
    return {
        "alert_id": aid,
        "detector": detector,
        "severity": severity,
        "account_id": account,
        "provider_id": provider,
        "principal_id": principal,
        "title": title,
        "summary": summary,
        "evidence_event_ids": list(evidence),
        "first_seen": _iso(first),
        "last_seen": _iso(last),
        "count": int(count),
        "response": list(response),
    }
