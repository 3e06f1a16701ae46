"""A provider calling the account's APIs faster than agreed, or far more than it usually does.

A leaked SP-API refresh token is typically used for scraping or mass edits: many more requests
than the partner's integration normally sends. Two rules, per provider per account, on event
time only (every provider event is one request, whatever its action or outcome; throttled and
denied calls are still calls):
- `api_rate_exceeded`: more than the limit in one clock minute, the limit being the account
  policy's `rate_limit_per_min` if set, else `rate_limit_per_min` from the configuration. It
  fires once per provider and minute (on the first request over the limit); consecutive minutes
  fold into one alert per suppression window.
- `api_rate_sustained`: a clock hour whose count reaches `rate_sustained_factor` x the provider's
  usual hour (mean of its previous hours with any requests, at most `HISTORY` of them) and at
  least `rate_sustained_min`; only once the provider has `MIN_HISTORY` previous active hours
  (before that there is no "usual"). Fires once per provider and hour.

Deliberately ignored: seller and Amazon actors (not delegated access), and events older than the
provider's current minute or hour (a late event is not counted twice into a closed window).
State: per provider, the current minute and hour counts and the bounded hourly history;
providers idle for `IDLE_HOURS` are forgotten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.responses import ABUSE, ROTATE
from detectors.windows import bucket, epoch_ms
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

EXCEEDED = "api_rate_exceeded"
SUSTAINED = "api_rate_sustained"
SEVERITY = "medium"
#: Previous active hours the baseline averages over, and how many it needs first.
HISTORY = 24
MIN_HISTORY = 3
#: A provider without requests for this long starts again without history.
IDLE_HOURS = 7 * 24
RESPONSE = (
    "Check the provider's integration with them: a runaway job, or a leaked SP-API token?",
    ROTATE,
    *ABUSE,
)


def limit_per_min(ctx: Context) -> int:
    """The account policy's `rate_limit_per_min`, else the configured default."""
    policy_limit = ctx.auth["policy"].get("rate_limit_per_min")
    return int(policy_limit) if policy_limit is not None else ctx.config.rate_limit_per_min


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    provider = actor["provider_id"]
    now = epoch_ms(event["occurred_at"])
    minute, hour = now // 60_000, now // 3_600_000
    providers: dict[str, Any] = state.setdefault("p", {})
    for other in [p for p, s in providers.items() if s["h"] < hour - IDLE_HOURS]:
        del providers[other]
    mine = providers.setdefault(provider, {"m": minute, "mn": 0, "h": hour, "hn": 0})

    findings = []
    if minute > mine["m"]:
        mine["m"], mine["mn"] = minute, 0
    if minute == mine["m"]:
        mine["mn"] += 1
        limit = limit_per_min(ctx)
        if mine["mn"] == limit + 1:
            findings.append(_exceeded(event, limit, ctx))

    if hour > mine["h"]:
        if mine["hn"] > 0:
            mine["hist"] = [*mine.get("hist", []), mine["hn"]][-HISTORY:]
        mine["h"], mine["hn"] = hour, 0
        mine.pop("fired", None)
    if hour == mine["h"]:
        mine["hn"] += 1
        history = mine.get("hist", [])
        if len(history) >= MIN_HISTORY and "fired" not in mine:
            usual = sum(history) / len(history)
            cfg = ctx.config
            if mine["hn"] >= cfg.rate_sustained_min and mine["hn"] >= cfg.rate_sustained_factor * usual:
                mine["fired"] = True
                findings.append(_sustained(event, mine["hn"], usual, len(history), ctx))
    return findings


def _exceeded(event: Event, limit: int, ctx: Context) -> Finding:
    actor = event["actor"]
    minute = bucket(event["occurred_at"], 1)
    return Finding(
        detector=EXCEEDED,
        severity=ctx.config.severity(EXCEEDED, SEVERITY),
        key=f"{event['account_id']}|{actor['provider_id']}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {actor['provider_id']} exceeded {limit} requests per minute",
        summary=(
            f"Provider {actor['provider_id']} sent more than {limit} requests in the minute from"
            f" {minute} on account {event['account_id']} (request {limit + 1}: {event['action']}"
            f" by {actor['principal_id']}, event {event['event_id']}). The alert's count is the"
            " number of minutes over the limit."
        ),
        response=RESPONSE,
    )


def _sustained(event: Event, count: int, usual: float, hours: int, ctx: Context) -> Finding:
    actor = event["actor"]
    hour = bucket(event["occurred_at"], 60)
    return Finding(
        detector=SUSTAINED,
        severity=ctx.config.severity(SUSTAINED, SEVERITY),
        key=f"{event['account_id']}|{actor['provider_id']}",
        window=hour,
        title=f"Provider {actor['provider_id']} is at {count / usual:.1f}x its usual hourly requests",
        summary=(
            f"Provider {actor['provider_id']} has sent {count} requests on account"
            f" {event['account_id']} in the hour from {hour}, against a usual {usual:.1f} per hour"
            f" (mean of its previous {hours} active hours); the threshold is"
            f" {ctx.config.rate_sustained_factor:g}x. Latest: {event['action']} by"
            f" {actor['principal_id']}, event {event['event_id']}."
        ),
        response=RESPONSE,
    )
