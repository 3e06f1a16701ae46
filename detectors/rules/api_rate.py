"""A provider calling the account's APIs faster than agreed, or far more than it usually does.

A leaked SP-API refresh token is typically used for scraping or mass edits: many more requests
than the partner's integration normally sends. Two rules, per provider per account, on event
time only (every provider event is one request, whatever its action or outcome; throttled and
denied calls are still calls):
- `api_rate_exceeded`: more than the limit within a minute of event time (a 60-second window
  sliding in 10-second steps, so a burst split across a clock minute is still seen whole), the
  limit being the account policy's `rate_limit_per_min` if set, else `rate_limit_per_min` from
  the configuration. It fires at most once per provider and clock minute (on the first request
  over the limit); consecutive minutes fold into one alert per suppression window.
- `api_rate_sustained`: a clock hour whose count reaches `rate_sustained_factor` x the
  provider's usual hour and at least `rate_sustained_min`. The usual hour is the provider's
  busy hour, the second-highest count among its previous hours with requests (at most
  `HISTORY`): a mean would call every morning after a quiet night "3x the usual", and the
  second-highest is not inflated by one odd hour. Only once the provider was first seen
  `LEARN_HOURS` before and has `MIN_HISTORY` previous active hours, so the usual hour has seen
  a whole day (before that there is no "usual"). Fires once per provider and hour; an hour that
  fired is not learned into the history.

Deliberately ignored: seller and Amazon actors (not delegated access), and events older than the
provider's current minute or hour (a late event is not counted twice into a closed window).
State: per provider, six 10-second counts, the current hour's count and the hourly history;
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
LEARN_HOURS = 24
#: The sliding minute moves in steps of this many milliseconds.
STEP_MS = 10_000
STEPS = 60_000 // STEP_MS
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


def busy_hour(history: list[int]) -> int:
    """The second-highest hourly count: the provider's usual busy hour, not one odd hour."""
    return sorted(history)[-2]


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
    mine = providers.setdefault(provider, {"h": hour, "hn": 0, "since": hour})

    findings = []
    step = now // STEP_MS
    newest = max([step, *map(int, mine.get("s", {}))])
    if step > newest - STEPS:  # older requests fall outside every minute still open
        steps = {k: v for k, v in mine.get("s", {}).items() if int(k) > newest - STEPS}
        steps[str(step)] = steps.get(str(step), 0) + 1
        mine["s"] = steps
        limit = limit_per_min(ctx)
        if sum(steps.values()) > limit and mine.get("fm", -1) < minute:
            mine["fm"] = minute
            findings.append(_exceeded(event, limit, ctx))

    if hour > mine["h"]:
        if mine["hn"] > 0 and "fired" not in mine:  # an hour that alerted is not usual
            mine["hist"] = [*mine.get("hist", []), mine["hn"]][-HISTORY:]
        mine["h"], mine["hn"] = hour, 0
        mine.pop("fired", None)
    if hour == mine["h"]:
        mine["hn"] += 1
        history = mine.get("hist", [])
        learned = len(history) >= MIN_HISTORY and hour - mine["since"] >= LEARN_HOURS
        if learned and "fired" not in mine:
            usual = busy_hour(history)
            cfg = ctx.config
            if (
                mine["hn"] >= cfg.rate_sustained_min
                and mine["hn"] >= cfg.rate_sustained_factor * usual
            ):
                mine["fired"] = True
                findings.append(_sustained(event, mine["hn"], usual, len(history), ctx))
    return findings


def _exceeded(event: Event, limit: int, ctx: Context) -> Finding:
    actor = event["actor"]
    return Finding(
        detector=EXCEEDED,
        severity=ctx.config.severity(EXCEEDED, SEVERITY),
        key=f"{event['account_id']}|{actor['provider_id']}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {actor['provider_id']} exceeded {limit} requests per minute",
        summary=(
            f"Provider {actor['provider_id']} sent more than {limit} requests within a minute"
            f" on account {event['account_id']} up to {event['occurred_at']} (the request over the"
            f" limit: {event['action']} by {actor['principal_id']}, event {event['event_id']}). The"
            " alert's count is the number of clock minutes over the limit."
        ),
        response=RESPONSE,
    )


def _sustained(event: Event, count: int, usual: int, hours: int, ctx: Context) -> Finding:
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
            f" {event['account_id']} in the hour from {hour}, against a usual busy hour of {usual}"
            f" (second-highest of its previous {hours} active hours); the threshold is"
            f" {ctx.config.rate_sustained_factor:g}x. Latest: {event['action']} by"
            f" {actor['principal_id']}, event {event['event_id']}."
        ),
        response=RESPONSE,
    )
