"""Prometheus Alertmanager: `POST <base>/api/v2/alerts` with one alert, so teams that route
with Alertmanager keep their routing tree, silences and inhibitions.

Alertmanager identifies an alert by its label set, so `alert_id` is a label: every version of a
PartnerWatch alert updates one Alertmanager alert. `startsAt` is the first evidence; `endsAt`
is the delivery time plus `ends_after` seconds, so an alert with no new version for that long
resolves by itself. `partnerwatch alerts resolve` (or the page's Resolve) ends it at once: the
alert feed sends the alert again with its lifecycle (sinks/alert_delivery/lifecycle.py) and
`endsAt` is the time of the resolve, which Alertmanager shows as resolved (and notifies
`send_resolved` receivers). An acknowledge keeps it firing, with `acknowledged_by` annotated;
a reopen fires it again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_status, json_request, lifecycle

API_PATH = "/api/v2/alerts"


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(seconds * 1000) % 1000:03d}Z"
    )


def _seconds(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def payload(
    alert: Alert, now: float, ends_after: float = 3600.0, generator_url: str = ""
) -> list[dict[str, Any]]:
    annotations = {
        "title": str(alert.get("title", "")),
        "summary": str(alert.get("summary", "")),
        "description": "\n".join(f"{i}. {s}" for i, s in enumerate(alert.get("response", []), 1)),
        "evidence_event_ids": ",".join(alert.get("evidence_event_ids", [])),
        "count": str(alert.get("count", 1)),
        "principal_id": str(alert.get("principal_id", "")),
    }
    ends = now + ends_after
    starts = str(alert.get("first_seen", ""))
    state = lifecycle(alert)
    if state is not None:
        annotations[f"{state['status']}_by"] = state["actor"]
        annotations[f"{state['status']}_at"] = state["at"]
        if state.get("note"):
            annotations["note"] = state["note"]
        if state["status"] == "resolved":
            at = _seconds(state["at"])
            ends = min(now, at) if at is not None else now
            # Alertmanager refuses an end before the start (an event time ahead of the clock)
            started = _seconds(starts)
            if started is not None and ends < started:
                starts = _iso(ends)
    entry: dict[str, Any] = {
        "labels": {
            "alertname": str(alert.get("detector", "partnerwatch")),
            "severity": str(alert.get("severity", "")),
            "detector": str(alert.get("detector", "")),
            "account_id": str(alert.get("account_id", "")),
            "provider_id": str(alert.get("provider_id", "")),
            "alert_id": str(alert.get("alert_id", "")),
            "source": "partnerwatch",
        },
        "annotations": annotations,
        "startsAt": starts,
        "endsAt": _iso(ends),
    }
    if generator_url:
        entry["generatorURL"] = generator_url
    return [entry]


class AlertmanagerOutput:
    follows_lifecycle = True

    def __init__(
        self,
        name: str,
        url: str,
        ends_after: float = 3600.0,
        generator_url: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/") + API_PATH if not url.rstrip("/").endswith(API_PATH) else url
        self.ends_after = ends_after
        self.generator_url = generator_url
        self.headers = dict(headers or {})

    def render(self, alert: Alert, now: float) -> HttpRequest:
        return json_request(
            self.url, payload(alert, now, self.ends_after, self.generator_url), self.headers
        )

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)
