"""OCSF Detection Finding (class 2004) rendering of an alert, and an output that POSTs it.

Mapping: `finding_info.uid` is the alert id, so a SIEM that keeps the latest finding per uid
never shows a replayed alert twice; the first version is activity Create (1), later versions
(more evidence) Update (2). Times are epoch milliseconds; `time` is the alert's last evidence.
The POST is signed like the generic webhook when a secret is set.
"""

from __future__ import annotations

from importlib import metadata as pkg_metadata
from typing import Any

import orjson

from pipeline.event import timestamp_ms
from sinks.alert_outputs.base import Alert, HttpRequest, check_status
from sinks.alert_outputs.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

OCSF_VERSION = "1.1.0"
CLASS_UID = 2004
CATEGORY_UID = 2
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 99: "Other"}
ACTIVITY = {1: "Create", 2: "Update"}


def _product_version() -> str:
    try:
        return pkg_metadata.version("partnerwatch")
    except pkg_metadata.PackageNotFoundError:
        return "0"


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """The Detection Finding of `alert`."""
    severity_id = SEVERITY_ID.get(str(alert.get("severity")), 99)
    activity_id = 1 if int(alert.get("count", 1)) <= 1 else 2
    first = timestamp_ms(alert["first_seen"], "first_seen")
    last = timestamp_ms(alert["last_seen"], "last_seen")
    return {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": ACTIVITY[activity_id],
        "type_uid": CLASS_UID * 100 + activity_id,
        "severity_id": severity_id,
        "severity": SEVERITY_NAME[severity_id],
        "status_id": 1,
        "status": "New",
        "time": last,
        "message": alert.get("title", ""),
        "count": int(alert.get("count", 1)),
        "finding_info": {
            "uid": alert["alert_id"],
            "title": alert.get("title", ""),
            "desc": alert.get("summary", ""),
            "first_seen_time": first,
            "last_seen_time": last,
            "analytic": {"uid": alert.get("detector", ""), "name": alert.get("detector", ""), "type_id": 1, "type": "Rule"},
            "related_events": [{"uid": e} for e in alert.get("evidence_event_ids", [])],
        },
        "remediation": {"desc": "\n".join(f"{i}. {s}" for i, s in enumerate(alert.get("response", []), 1))},
        "metadata": {
            "product": {"name": "PartnerWatch", "vendor_name": "PartnerWatch", "version": _product_version()},
            "version": OCSF_VERSION,
        },
        "unmapped": {
            "account_id": alert.get("account_id", ""),
            "provider_id": alert.get("provider_id", ""),
            "principal_id": alert.get("principal_id", ""),
        },
    }


class OcsfOutput:
    """POSTs the Detection Finding as JSON (e.g. to a SIEM's HTTP collector)."""

    def __init__(self, name: str, url: str, secret: str = "", headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.headers = dict(headers or {})

    def render(self, alert: Alert, now: float) -> HttpRequest:
        body = orjson.dumps(to_ocsf(alert))
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.secret:
            timestamp = str(int(now))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return HttpRequest(self.url, body, headers)

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)
