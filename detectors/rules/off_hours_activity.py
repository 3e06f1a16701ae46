"""A provider acting outside every covering grant's `active_hours`.

Agencies work office hours, and a seller can pin that down per grant (`active_hours`, in the
agency's own IANA time zone). Activity at 03:00 agency time is what stolen credentials look like
when the thief sits elsewhere, or an employee working on the side. It is only a hint (deadlines,
launches and time-zone mistakes make honest night work), hence `low` and one alert per principal
per suppression window.

Windows may cross midnight, DST included (`detectors.grants.within_hours`). A covering grant
without `active_hours` allows any time, so the rule fires only when every live grant covering the
principal has hours and none admits the moment. Every action and outcome counts. Deliberately
ignored: sellers and Amazon, and providers with no covering grant (the scope and no-grant rules
report those). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.grants import within_hours
from detectors.windows import local_time
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "off_hours_activity"
SEVERITY = "low"
RESPONSE = (
    responses.CONFIRM,
    "If the provider cannot account for the activity, rotate the principal's credentials and"
    " revoke the grant until it can.",
    responses.PRESERVE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    live = ctx.covering(event)
    ts = event["occurred_at"]
    if not live or any(within_hours(g, ts) for g in live):
        return []
    provider, principal = actor["provider_id"], actor["principal_id"]
    windows = "; ".join(
        f"{g['grant_id']}: {h['start']}-{h['end']} {h['tz']}"
        f" (it was {local_time(ts, h['tz']):%H:%M} there)"
        for g in sorted(live, key=lambda g: g["grant_id"])
        for h in (g["active_hours"],)
    )
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}|{principal}",
            title=f"Provider {provider} active outside its agreed hours",
            summary=(
                f"Principal {principal} of provider {provider} performed {event['action']} on"
                f" account {event['account_id']} at {ts}, outside the active hours of every"
                f" covering grant ({windows})."
            ),
            response=RESPONSE,
        )
    ]
