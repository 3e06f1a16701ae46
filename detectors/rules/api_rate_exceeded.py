"""A provider calling the account's APIs faster than agreed (a leaked SP-API refresh token, used
for scraping or mass edits).

Per provider per account, every provider event is one request, whatever its action or outcome
(throttled and denied calls are still calls). Fires when more than the limit (the account policy's
`rate_limit_per_min`, else the configuration's) arrive within a minute of event time: a 60-second
window sliding in 10-second steps, so a burst split across a clock minute is seen whole. At most
once per provider and clock minute (the first request over the limit); consecutive minutes fold
into one alert per suppression window.

Ignored: seller and Amazon actors (not delegated access), requests older than every minute still
open. State per provider: six 10-second counts, the ids of its latest `RECENT` requests in the
minute (the evidence), its newest hour; providers idle for `IDLE_HOURS` are forgotten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import rates
from detectors.responses import API_ABUSE
from detectors.windows import recent_after
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "api_rate_exceeded"
SEVERITY = "medium"
STEP_MS: Final = 10_000
STEPS: Final = 60_000 // STEP_MS
IDLE_HOURS: Final = 7 * 24
#: The latest requests of the minute named as the alert's evidence (with the one over the limit).
RECENT: Final = 20


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    provider: str = actor["provider_id"]
    now = ctx.epoch_ms(event["occurred_at"])
    hour, step = now // 3_600_000, now // STEP_MS
    providers: dict[str, Any] = state.setdefault("p", {})
    rates.forget_idle(providers, hour - IDLE_HOURS, hour)
    mine: dict[str, Any] | None = providers.get(provider)
    if mine is None:
        mine = providers[provider] = {"h": hour}
    elif hour > mine["h"]:
        mine["h"] = hour
    floor = rates.count_step(mine, step, STEPS)
    if floor is None:  # older requests fall outside every minute still open
        return []
    recent = recent_after(mine, "r", floor, RECENT)
    recent.append([step, event["event_id"]])
    total = sum(mine["s"].values())
    policy_limit = ctx.auth["policy"].get("rate_limit_per_min")
    limit = int(policy_limit) if policy_limit is not None else ctx.config.rate_limit_per_min
    minute = now // 60_000
    if total <= limit or mine.get("fm", -1) >= minute:
        return []
    mine["fm"] = minute
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}",
            title=f"Provider {provider} exceeded {limit} requests per minute",
            summary=(
                f"Provider {provider} sent more than {limit} requests within a minute on account"
                f" {event['account_id']} up to {event['occurred_at']} (the request over the"
                f" limit: {event['action']} by {actor['principal_id']}, event"
                f" {event['event_id']}). The alert's count is the number of clock minutes over"
                " the limit."
            ),
            response=API_ABUSE,
            related=tuple(r[1] for r in recent[:-1]),
        )
    ]
