"""OCSF Detection Finding (class 2004, OCSF 1.1.0) rendering of an alert, and an output that POSTs it.

Mapping (checked against the OCSF schema in tests/alert_feeds/test_ocsf_schema.py):
- `finding_info.uid` is the alert id, so a SIEM that keeps the latest finding per uid never shows
  a replayed alert twice; `finding_info.analytic` names the detector, as a Rule (type_id 1), or
  as Learning (ML/DL, type_id 4) for the behaviour model's detector;
- `resources`: the seller account the alert is about (the affected resource);
- `evidences`: who acted (`actor.user`: the principal, with its provider as `org`) and the ids
  of the ledger events the alert rests on (also in `finding_info.related_events`);
- activity Create (1) for the first version, Update (2) for later ones (more evidence), Close (3)
  when the alert is resolved; `status_id` New (1), In Progress (2) once acknowledged, Resolved (4)
  after `alerts resolve` (the alert feed sends that version, sinks/alert_delivery/lifecycle.py),
  New again when reopened. Who acted and why is in `comment` and `status_detail`.
Times are epoch milliseconds; `time` is the alert's last evidence, or the lifecycle action's time.
The POST is signed like the generic webhook (Standard Webhooks) when a secret is set.
"""

from __future__ import annotations

from datetime import datetime
from importlib import metadata as pkg_metadata
from typing import Any

import orjson

from pipeline.event import timestamp_ms
from pipeline.webhook_signature import secret_key
from sinks.alert_outputs.base import Alert, HttpRequest, check_status, lifecycle
from sinks.alert_outputs.webhook import signed_headers

OCSF_VERSION = "1.1.0"
CLASS_UID = 2004
CATEGORY_UID = 2
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 99: "Other"}
ACTIVITY = {1: "Create", 2: "Update", 3: "Close"}
STATUS = {1: "New", 2: "In Progress", 4: "Resolved"}
#: PartnerWatch lifecycle status -> OCSF status_id
STATUS_ID = {"acknowledged": 2, "resolved": 4, "reopened": 1}
#: Detectors that are a trained model rather than a rule (analytic type Learning (ML/DL)).
LEARNING_DETECTORS = frozenset({"behaviour_anomaly"})
ANALYTIC_RULE = (1, "Rule")
ANALYTIC_LEARNING = (4, "Learning (ML/DL)")


def _product_version() -> str:
    try:
        return pkg_metadata.version("partnerwatch")
    except pkg_metadata.PackageNotFoundError:
        return "0"


def _iso_ms(text: str) -> int:
    """Epoch ms of an ISO 8601 time such as the lifecycle's `2026-11-26T23:01:02.345Z`."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def analytic(detector: str) -> dict[str, Any]:
    type_id, type_name = ANALYTIC_LEARNING if detector in LEARNING_DETECTORS else ANALYTIC_RULE
    return {"uid": detector, "name": detector, "type_id": type_id, "type": type_name}


def _actor(alert: Alert) -> dict[str, Any] | None:
    principal = str(alert.get("principal_id") or "")
    provider = str(alert.get("provider_id") or "")
    if not principal and not provider:
        return None
    user: dict[str, Any] = (
        {"uid": principal} if principal else {"name": f"a principal of provider {provider}"}
    )
    if provider:
        user["org"] = {"uid": provider, "name": provider}
        user["type"] = "Provider principal"
    return {"user": user}


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """The Detection Finding of `alert` (with its lifecycle when the feed sends one)."""
    severity_id = SEVERITY_ID.get(str(alert.get("severity")), 99)
    count = int(alert.get("count", 1))
    first = timestamp_ms(alert["first_seen"], "first_seen")
    last = timestamp_ms(alert["last_seen"], "last_seen")
    event_ids = [str(e) for e in alert.get("evidence_event_ids", [])]
    state = lifecycle(alert)
    activity_id = 1 if count <= 1 else 2
    status_id = 1
    time = last
    if state is not None:
        status_id = STATUS_ID[state["status"]]
        activity_id = 3 if state["status"] == "resolved" else 2
        time = max(last, _iso_ms(state["at"]))
    account = str(alert.get("account_id", ""))
    evidence: dict[str, Any] = {"data": {"evidence_event_ids": event_ids, "count": count}}
    actor = _actor(alert)
    if actor is not None:
        evidence["actor"] = actor
    finding: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": ACTIVITY[activity_id],
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {ACTIVITY[activity_id]}",
        "severity_id": severity_id,
        "severity": SEVERITY_NAME[severity_id],
        "status_id": status_id,
        "status": STATUS[status_id],
        "time": time,
        "start_time": first,
        "end_time": last,
        "message": alert.get("title", ""),
        "count": count,
        "finding_info": {
            "uid": alert["alert_id"],
            "title": alert.get("title", ""),
            "desc": alert.get("summary", ""),
            "first_seen_time": first,
            "last_seen_time": last,
            "analytic": analytic(str(alert.get("detector", ""))),
            "related_events": [{"uid": e} for e in event_ids],
        },
        "resources": [{"uid": account, "name": account, "type": "Seller account"}],
        "evidences": [evidence],
        "remediation": {
            "desc": "\n".join(f"{i}. {s}" for i, s in enumerate(alert.get("response", []), 1))
        },
        "metadata": {
            "product": {
                "name": "PartnerWatch",
                "vendor_name": "PartnerWatch",
                "version": _product_version(),
            },
            "version": OCSF_VERSION,
        },
    }
    if state is not None:
        finding["finding_info"]["modified_time"] = _iso_ms(state["at"])
        finding["status_detail"] = f"{state['status']} by {state['actor']} at {state['at']}"
        if state.get("note"):
            finding["comment"] = state["note"]
    return finding


class OcsfOutput:
    """POSTs the Detection Finding as JSON (e.g. to a SIEM's HTTP collector)."""

    follows_lifecycle = True

    def __init__(
        self, name: str, url: str, secret: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        if secret:
            secret_key(secret)  # a malformed whsec_ secret stops the feed at start
        self.headers = dict(headers or {})

    def render(self, alert: Alert, now: float) -> HttpRequest:
        body = orjson.dumps(to_ocsf(alert))
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.secret:
            headers.update(signed_headers(self.secret, alert, now, body))
        return HttpRequest(self.url, body, headers)

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)
