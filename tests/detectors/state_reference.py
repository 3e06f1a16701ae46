"""The state handling of the stateful detectors as it was before it was made cheaper (main at
759855f): the reference the differential tests (test_state_reference.py) compare the current
code with. Not used by the pipeline.

Each function here is the former body of the one named in its comment; what did not change
(constants, findings' wording helpers, `_touch`, `_sweep`...) is taken from the current modules.
Before, every event rebuilt the per-provider and per-principal dicts and lists (windows of
10-second steps re-keyed through `int(str)`, recent-id lists copied, empty dicts created and
deleted); the current code changes the same JSON values in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detectors import ALL, geo
from detectors import reconciliation as rc
from detectors.context import Context
from detectors.responses import API_ABUSE
from detectors.rules import bulk_listing_burst as bulk
from detectors.rules import change_outside_gateway as cog
from detectors.rules import new_country_or_asn as ncoa
from detectors.windows import epoch_ms
from pipeline import authorization
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import Event

DetectFn = Callable[[Event, dict[str, Any], Context], list[Finding]]


# detectors/rules/api_rate_exceeded.py `detect`
def api_rate_exceeded(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    provider = actor["provider_id"]
    now = epoch_ms(event["occurred_at"])
    minute, hour, step = now // 60_000, now // 3_600_000, now // 10_000
    providers: dict[str, Any] = state.setdefault("p", {})
    for other in [p for p, s in providers.items() if s["h"] < hour - 7 * 24]:
        del providers[other]
    mine = providers.setdefault(provider, {"h": hour})
    mine["h"] = max(mine["h"], hour)
    newest = max([step, *map(int, mine.get("s", {}))])
    if step <= newest - 6:
        return []
    steps = {k: v for k, v in mine.get("s", {}).items() if int(k) > newest - 6}
    steps[str(step)] = steps.get(str(step), 0) + 1
    mine["s"] = steps
    recent = [r for r in mine.get("r", ()) if r[0] > newest - 6][-(20 - 1) :]
    recent.append([step, event["event_id"]])
    mine["r"] = recent
    policy_limit = ctx.auth["policy"].get("rate_limit_per_min")
    limit = int(policy_limit) if policy_limit is not None else ctx.config.rate_limit_per_min
    if sum(steps.values()) <= limit or mine.get("fm", -1) >= minute:
        return []
    mine["fm"] = minute
    return [
        ctx.finding(
            event,
            detector="api_rate_exceeded",
            severity="medium",
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


# detectors/rates.py `count`
def rates_count(
    hours: dict[str, Any], key: str, hour: int, idle_hours: int, event_id: str | None = None
) -> dict[str, Any] | None:
    for idle in [k for k, s in hours.items() if s["h"] < hour - idle_hours]:
        del hours[idle]
    mine: dict[str, Any] = hours.setdefault(key, {"h": hour, "n": 0, "since": hour})
    if hour > mine["h"]:
        if mine["n"] > 0 and "fired" not in mine:
            mine["hist"] = [*mine.get("hist", []), mine["n"]][-24:]
        mine["h"], mine["n"] = hour, 0
        mine.pop("fired", None)
        mine.pop("ids", None)
    if hour < mine["h"]:
        return None
    mine["n"] += 1
    if event_id is not None:
        ids = mine.setdefault("ids", [])
        ids.append(event_id)
        if len(ids) > 20:
            del ids[0]
    return mine


# detectors/rules/bulk_listing_burst.py `_principal`, `_burst` and `detect`
def _bulk_principal(principals: dict[str, Any], who: str, at: int, size: int) -> dict[str, Any]:
    p = principals.get(who)
    if p is None:
        p = {
            "clock": at,
            "bucket": at // size,
            "peak": 0,
            "history": [],
            "edits": {},
            "deletes": {},
        }
        principals[who] = p
        bulk._forget_idle(principals, at)
    p["clock"] = max(p["clock"], at)
    if p["clock"] // size > p["bucket"]:
        p["history"] = [*p["history"], p["peak"]][-bulk.HISTORY :]
        p["bucket"], p["peak"] = p["clock"] // size, 0
        bulk._forget_idle(principals, p["clock"])
    return p


def _bulk_burst(
    p: dict[str, Any], counts: dict[str, int], deleting: bool, at: str, ctx: Context
) -> str | None:
    bursts = p.setdefault("bursts", {})
    for kind in list(bursts):
        if counts[kind] < bursts[kind][1]:
            del bursts[kind]
    current = bulk._threshold(p["history"], ctx)
    for kind in ("deletes", "edits") if deleting else ("edits",):
        if counts[kind] >= (bursts[kind][1] if kind in bursts else current):
            bursts.setdefault(kind, [at, current])
            return kind
    if not bursts:
        del p["bursts"]
    return None


def bulk_listing_burst(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor, action = event["actor"], event["action"]
    sku = event.get("resource", {}).get("id")
    if actor["type"] != "provider" or not action.startswith(bulk.EDIT_PREFIXES) or sku is None:
        return []
    size = max(1, ctx.config.bulk_window_minutes) * 60_000
    at = epoch_ms(event["occurred_at"])
    provider, principal = actor["provider_id"], actor["principal_id"]
    p = _bulk_principal(state.setdefault("principals", {}), f"{provider}|{principal}", at, size)
    cutoff = p["clock"] - size
    deleting = action == "listing.delete"
    counts = {
        "edits": len(bulk._touch(p["edits"], sku, at, cutoff)),
        "deletes": len(bulk._touch(p["deletes"], sku if deleting else None, at, cutoff)),
    }
    p["peak"] = max(p["peak"], counts["edits"])
    recent = [r for r in p.get("recent", []) if r[0] > cutoff][-(bulk.RECENT - 1) :]
    p["recent"] = [*recent, [at, event["event_id"]]]
    kind = _bulk_burst(p, counts, deleting, event["occurred_at"], ctx)
    if kind is None:
        return []
    started, limit = p["bursts"][kind]
    verb, minutes = ("deleted" if kind == "deletes" else "edited"), size // 60_000
    return [
        ctx.finding(
            event,
            detector=bulk.DETECTOR,
            severity="critical" if kind == "deletes" else "medium",
            key=f"{event['account_id']}|{provider}|{principal}|{kind}",
            window=started,
            title=f"Provider {provider} {verb} {counts[kind]} listings within {minutes} minutes",
            summary=(
                f"Principal {principal} of provider {provider} {verb} {counts[kind]} distinct SKUs"
                f" on account {event['account_id']} in the {minutes} minutes up to"
                f" {event['occurred_at']} (last: {action} on {sku}); the threshold is {limit:g}"
                f" SKUs ({len(p['history'])} earlier windows on record), the burst began at"
                f" {started}."
            ),
            response=bulk.RESPONSE,
            related=tuple(r[1] for r in recent),
        )
    ]


# detectors/rules/new_country_or_asn.py `detect`, `_forget` and `_remember`
def new_country_or_asn(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    ip = event.get("source", {}).get("ip")
    if actor["type"] != "provider" or ip is None:
        return []
    place = geo.lookup(ip)
    if place.country is None and place.asn_name is None and place.asn is None:
        return []
    now = epoch_ms(event["occurred_at"])
    principals: dict[str, Any] = state.setdefault("principals", {})
    ncoa._sweep(state, principals, now)
    seen = principals.get(actor["principal_id"])
    if seen is None:
        seen = principals[actor["principal_id"]] = {
            "first": now,
            "last": now,
            "n": 0,
            "countries": {},
            "operators": {},
        }
    countries: dict[str, int] = seen["countries"]
    operators: dict[str, int] = seen["operators"]
    _ncoa_forget(countries, now)
    _ncoa_forget(operators, now)
    baselined = (
        seen["n"] >= ncoa.BASELINE_EVENTS or now - seen["first"] >= ncoa.BASELINE_HOURS * 3_600_000
    )
    new_country = place.country is not None and place.country not in countries
    network = ncoa._network(place)
    new_operator = (
        network is not None
        and network not in operators
        and (place.asn is None or place.asn_name is None or place.asn_name not in operators)
    )
    known_countries = sorted(countries)
    _ncoa_remember(countries, place.country, now, ncoa.MAX_COUNTRIES)
    _ncoa_remember(operators, network, now, ncoa.MAX_OPERATORS)
    seen["n"] = min(ncoa.BASELINE_EVENTS, seen["n"] + 1)
    seen["first"] = min(seen["first"], now)
    seen["last"] = max(seen["last"], now)
    if not baselined or not (new_country or new_operator):
        return []
    if ctx.declared_network(event) is not None:
        return []
    return [ncoa._finding(event, ctx, ip, place, new_country, known_countries)]


def _ncoa_forget(items: dict[str, int], now: int) -> None:
    for name in [n for n, last in items.items() if last < now - ncoa._MEMORY_MS]:
        del items[name]


def _ncoa_remember(items: dict[str, int], name: str | None, now: int, limit: int) -> None:
    if name is None:
        return
    items[name] = max(items.get(name, now), now)
    while len(items) > limit:
        del items[min(items, key=lambda n: (items[n], n))]


# detectors/reconciliation.py `prune`
def reconciliation_prune(
    state: dict[str, Any], newest: int, keep_calls_ms: int, keep_ids_ms: int
) -> None:
    horizon = newest - keep_calls_ms
    calls = state.get("calls", {})
    for key in list(calls):
        calls[key] = [c for c in calls[key] if c[0] >= horizon]
        if not calls[key]:
            del calls[key]
    for key in list(state.get("hist", {})):
        entries = state["hist"][key]
        older = [e for e in entries if e[0] < horizon]
        state["hist"][key] = older[-1:] + [e for e in entries if e[0] >= horizon]
    for table in ("ids", "schedules", "alerted"):
        found = state.get(table, {})
        for name in [
            n
            for n, at in found.items()
            if (at[0] if isinstance(at, list) else at) < newest - keep_ids_ms
        ]:
            del found[name]
    payouts = state.get("payouts", {})
    for site in list(payouts):
        payouts[site] = [p for p in payouts[site] if p[0] >= newest - keep_ids_ms]
        if not payouts[site]:
            del payouts[site]
    for table in ("calls", "ids", "schedules", "alerted", "payouts", "asin", "hist"):
        if table in state and not state[table]:
            del state[table]


# detectors/rules/change_outside_gateway.py `detect` and `_due`
def change_outside_gateway(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    cfg = ctx.config
    at = rc.event_ms(event)
    newest = max(at, state.get("newest", at))
    state["newest"] = newest
    window, skew = (
        cfg.outside_gateway_window_minutes * 60_000,
        cfg.outside_gateway_skew_minutes * 60_000,
    )
    found: list[dict[str, Any]] = []
    source = rc.adapter(event)
    if source == rc.GATEWAY:
        cog._learn_call(event, state, at)
    elif source in rc.OBSERVERS and event["actor"]["type"] == "amazon":
        found = cog._judge(
            event, state, at, window, skew, cfg.outside_gateway_ignore_quantity_decrease
        )
    findings = []
    grace = cfg.outside_gateway_grace_minutes * 60_000
    for item in found:
        if grace and at + grace > newest and not item.get("always"):
            state.setdefault("pending", []).append(item)
        else:
            findings.append(cog._finding(event, item, ctx))
    for item in change_outside_gateway_due(state, newest, grace, window, skew):
        findings.append(cog._finding(event, item, ctx))
    keep = max(2 * window + skew, cfg.outside_gateway_late_hours * 3_600_000)
    reconciliation_prune(state, newest, keep, cfg.outside_gateway_id_days * 86_400_000)
    return findings


def change_outside_gateway_due(
    state: dict[str, Any], newest: int, grace: int, window: int, skew: int
) -> list[dict[str, Any]]:
    pending = state.get("pending", [])
    due = [p for p in pending if p["at"] + grace <= newest]
    state["pending"] = [p for p in pending if p["at"] + grace > newest]
    if not state["pending"]:
        del state["pending"]
    out = []
    for item in due:
        if item["kind"] == "listing":
            near = rc.calls_near(state, item["key"], item["at"], window, skew)
            if cog._explained(near, item["attribute"], item["new"], True):
                continue
        elif item["kind"] in ("feed", "report") and item["key"].split("|", 1)[1] in state.get(
            "ids", {}
        ):
            continue
        out.append(item)
    return out


#: The detectors whose `detect` changed, as they were.
BEFORE: dict[str, DetectFn] = {
    "api_rate_exceeded": api_rate_exceeded,
    "bulk_listing_burst": bulk_listing_burst,
    "new_country_or_asn": new_country_or_asn,
    "change_outside_gateway": change_outside_gateway,
}
#: Every detector as `detectors.ALL` lists them, the changed ones as they were.
ALL_BEFORE: tuple[tuple[str, DetectFn], ...] = tuple(
    (name, BEFORE.get(name, detect)) for name, detect in ALL
)


# detectors/run.py `observe`, with the detectors as they were
def observe(state: dict[str, Any], event: Event, config: DetectionConfig) -> list[Finding]:
    if event["action"] in authorization.AUTHORIZATION_ACTIONS:
        authorization.apply(state["auth"], event)
    ctx = Context(auth=state["auth"], config=config)
    findings: list[Finding] = []
    detector_state = state["det"]
    for name, detector in ALL_BEFORE:
        own = detector_state.setdefault(name, {})
        findings.extend(detector(event, own, ctx))
        if not own:
            del detector_state[name]
    return findings
