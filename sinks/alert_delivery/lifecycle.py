"""An alert's lifecycle (ack, resolve, reopen) to the outputs that follow it.

`partnerwatch alerts ack|resolve|reopen` and `POST /v1/alerts/{id}/ack|resolve|reopen` record the
action in the warehouse (sinks/alert_status.py) and then publish one status record on
`<prefix>alerts.status` (Settings.alert_status_topic), keyed by account:

    {"alert_id", "account_id", "status", "actor", "note", "at", "alert": <latest version or null>}

The alert feed (sinks/alert_delivery/feed.py) reads that topic beside pw.alerts and sends the
alert once more, with `alert["lifecycle"] = {"status", "actor", "note", "at"}`, to the outputs of
its routes that follow the lifecycle (`follows_lifecycle = True`: Alertmanager ends the alert,
OCSF closes the finding). Chat cards and the generic webhook are not sent lifecycle records (a
webhook receiver such as the gateway's kill switch acts on every alert it gets). Later versions
of an alert the feed knows as resolved carry the resolve too, so new evidence does not re-fire
what a person closed; a reopen clears it.
"""

from __future__ import annotations

from typing import Any

import orjson

from sinks.alert_outputs.base import LIFECYCLE_STATUSES as STATUSES
from sinks.alert_outputs.base import Alert


def status_record(row: dict[str, Any], alert: Alert | None) -> bytes:
    """The status record of a lifecycle row (StatusRow.as_dict()) with the alert's latest version."""
    return orjson.dumps(
        {
            "alert_id": row["alert_id"],
            "account_id": row["account_id"],
            "status": row["status"],
            "actor": row["actor"],
            "note": row.get("note", ""),
            "at": row["at"],
            "alert": alert,
        }
    )


def parse_status(value: bytes) -> dict[str, Any]:
    """A status record, checked; raises ValueError for anything else."""
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise ValueError("not a status record")
    for field in ("alert_id", "account_id", "actor", "at"):
        if not isinstance(record.get(field), str) or not record[field]:
            raise ValueError(f"status record without {field}")
    if record.get("alert") is not None and not isinstance(record["alert"], dict):
        raise ValueError("status record's alert is not an object")
    return record


def lifecycle_of(record: dict[str, Any]) -> dict[str, str]:
    return {k: str(record.get(k, "")) for k in ("status", "actor", "note", "at")}


def with_lifecycle(alert: Alert, lifecycle: dict[str, str]) -> Alert:
    """`alert` as the outputs render it after a lifecycle action (a copy)."""
    return {**alert, "lifecycle": dict(lifecycle)}
