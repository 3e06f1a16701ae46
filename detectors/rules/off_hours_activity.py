"""A provider acting outside every covering grant's `active_hours`.

Agencies work office hours, and a seller can pin that down per grant (`active_hours`, in the
agency's own IANA time zone). Activity at 03:00 agency time is what stolen credentials look like
when the thief sits elsewhere, or an employee working on the side. It is only a hint (deadlines,
launches and time-zone mistakes make honest night work), hence `low` and one alert per principal
per suppression window.

A window with `start` after `end` crosses midnight (22:00-06:00 means from 22:00 to 06:00 the
next morning); `start` equal to `end` means the whole day; `end` is exclusive, minutes count. A
covering grant without `active_hours` allows any time, so the rule fires only when every live
grant covering the principal has hours and none admits the moment, in its own time zone (DST
included, via `detectors.windows.local_time`). Every action and outcome counts. Deliberately
ignored: sellers and Amazon, and providers with no covering grant (the scope and no-grant rules
report those).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.windows import bucket, local_time
from pipeline.alert import Finding
from pipeline.authorization import AccountGrants, Grant
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "off_hours_activity"
RESPONSE = (
    responses.CONFIRM,
    "If the provider cannot account for the activity, rotate the principal's credentials and"
    " revoke the grant until it can.",
    responses.PRESERVE,
)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def within_hours(grant: Grant, ts: str) -> bool:
    """`ts` falls inside the grant's active hours (no active hours: always)."""
    hours = grant.get("active_hours")
    if hours is None:
        return True
    local = local_time(ts, hours["tz"])
    now = local.hour * 60 + local.minute
    start, end = _minutes(hours["start"]), _minutes(hours["end"])
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight


def decide(event: Event, grants: AccountGrants, ctx: Context) -> Finding | None:
    actor = event["actor"]
    live = ctx.covering(event)
    ts = event["occurred_at"]
    if not live or any(within_hours(g, ts) for g in live):
        return None
    provider, principal = actor["provider_id"], actor["principal_id"]
    windows = "; ".join(
        f"{g['grant_id']}: {h['start']}-{h['end']} {h['tz']}"
        f" (it was {local_time(ts, h['tz']):%H:%M} there)"
        for g in sorted(live, key=lambda g: g["grant_id"])
        for h in (g["active_hours"],)
    )
    return Finding(
        detector=DETECTOR,
        severity=ctx.config.severity(DETECTOR, "low"),
        key=f"{event['account_id']}|{provider}|{principal}",
        window=bucket(ts, ctx.config.suppression_minutes),
        title=f"Provider {provider} active outside its agreed hours",
        summary=(
            f"Principal {principal} of provider {provider} performed {event['action']} on account"
            f" {event['account_id']} at {ts}, outside the active hours of every covering grant"
            f" ({windows})."
        ),
        response=RESPONSE,
    )


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    finding = decide(event, ctx.auth["grants"], ctx)
    return [finding] if finding is not None else []
