"""A provider calling the account's APIs far more than it usually does, for a whole hour.

A leaked SP-API token used for scraping stays under the per-minute limit but lifts the
provider's hourly volume. Per provider per account, every provider event is one request (any
action or outcome). Fires when a clock hour's count reaches `rate_sustained_factor` x the
provider's usual busy hour and at least `rate_sustained_min`; the busy hour and when it is
learned are detectors/rates.py's (a day of history first: before that there is no "usual").
Once per provider and hour; an hour that fired is not learned into the history.

Deliberately ignored: seller and Amazon actors, and late events of a closed hour. State: per
provider, the current hour's count, its latest request ids (the alert's evidence: the hour's
latest `rates.RECENT` requests) and the hourly history; providers idle for `IDLE_HOURS` are
forgotten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import rates
from detectors.responses import API_ABUSE
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "api_rate_sustained"
SEVERITY = "medium"
IDLE_HOURS: Final = 7 * 24


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    provider = actor["provider_id"]
    hour = ctx.epoch_ms(event["occurred_at"]) // 3_600_000
    mine = rates.count(state.setdefault("p", {}), provider, hour, IDLE_HOURS, event["event_id"])
    if mine is None or "fired" in mine:
        return []
    count, cfg = mine["n"], ctx.config
    if count < cfg.rate_sustained_min:
        return []
    usual = rates.usual_hour(mine)
    if usual is None or count < cfg.rate_sustained_factor * usual:
        return []
    mine["fired"] = True
    start = bucket(event["occurred_at"], 60)
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}",
            window=start,
            title=f"Provider {provider} is at {count / usual:.1f}x its usual hourly requests",
            summary=(
                f"Provider {provider} has sent {count} requests on account"
                f" {event['account_id']} in the hour from {start}, against a usual busy hour of"
                f" {usual} (second-highest of its previous {len(mine['hist'])} active hours); the"
                f" threshold is {cfg.rate_sustained_factor:g}x. Latest: {event['action']} by"
                f" {actor['principal_id']}, event {event['event_id']}."
            ),
            response=API_ABUSE,
            related=rates.hour_evidence(mine, event["event_id"]),
        )
    ]
