"""Compliance drift: a tax filing that did not happen, and provider writes that keep failing.

Late VAT filings and out-of-sync catalogues are the quiet ways a partnership fails; neither is an
attack, so both are medium and carry the talk-first response (`responses.DRIFT`).

`tax_filing_missed`: the account policy's `tax_filings` entries (`{marketplace, cadence, due_day}`)
say a `tax.filing` (successful, by any actor) is expected on that marketplace in every period,
by its due day. A period is a month (monthly) or a quarter starting in January, April, July or
October (quarterly); the filing is due in the period's first month, from the period's first day
until the end of `due_day` (clamped to the month's last day) plus `tax_grace_days`, in UTC. A
missing filing is an absence, so event time drives it: the first event of the account at or
after the deadline decides the period, and fires once per marketplace and period if no filing
arrived in time (a late filing itself is such an event, and is reported as missed). A period is
only judged when the policy named the obligation before its deadline AND the detector had seen
the account since the period began (so it knows every filing of the period): no alerts for
periods before the policy existed or before the account's history starts here.
An alert names as evidence the `policy.update` that set the obligation, then the event that
noticed the absence.

`failed_writes_spike`: provider writes (`listing.*`, `inventory.*`, `ads.*`) with outcome
`failure` or `denied` on the account reach `failed_writes_min` within a sliding
`failed_writes_window_minutes`: a partner's sync is broken or it pushes changes it may not make.

Deliberately ignored: seller and Amazon writes (not the partner's sync), failed filings (not a
filing), and events older than what was already decided. State: when the account was first
seen, the last filing times per marketplace (bounded), the last period decided per obligation,
and the newest `failed_writes_min` failures.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from detectors.responses import DRIFT
from detectors.windows import bucket, epoch_ms
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

TAX = "tax_filing_missed"
FAILED_WRITES = "failed_writes_spike"
SEVERITY = "medium"
WRITE_PREFIXES = ("listing.", "inventory.", "ads.")
FAILED = frozenset({"failure", "denied"})
#: Filings remembered per marketplace, and how many past periods one event may decide.
MAX_FILINGS = 24
MAX_PERIODS = 12
TAX_RESPONSE = (
    "Check with the tax agent whether the return was filed outside PartnerWatch's view; if not,"
    " file now and ask the tax office about late-filing penalties.",
    *DRIFT,
)
SYNC_RESPONSE = (
    "Look at the failures' operations and resources (audit.events, outcome) with the provider:"
    " a broken feed, expired permissions, or changes it may not make?",
    *DRIFT,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    now = epoch_ms(event["occurred_at"])
    state.setdefault("from", now)
    findings = _tax(event, now, state, ctx)
    failed = _failed_writes(event, now, state, ctx)
    if failed is not None:
        findings.append(failed)
    return findings


# -- tax filings ---------------------------------------------------------------------------------


def _month_start(index: int) -> datetime:
    """Month `index` (months since year 0) as its first instant, UTC."""
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _month_index(ms: int) -> int:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.year * 12 + moment.month - 1


def _deadline(index: int, due_day: int, grace_days: int) -> datetime:
    start = _month_start(index)
    last = calendar.monthrange(start.year, start.month)[1]
    return start + timedelta(days=min(due_day, last) + grace_days)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _tax(event: Event, now: int, state: dict[str, Any], ctx: Context) -> list[Finding]:
    filed = event["action"] == "tax.filing" and event["outcome"] == "success"
    obligations = {
        f"{o['marketplace']}|{o['cadence']}|{o['due_day']}": o
        for o in ctx.auth["policy"].get("tax_filings", [])
    }
    if not filed and not obligations and "tax" not in state:
        return []
    tax: dict[str, Any] = state.setdefault("tax", {"filings": {}, "plans": {}})
    if filed:
        site = event["marketplace"]
        tax["filings"][site] = sorted([*tax["filings"].get(site, []), now])[-MAX_FILINGS:]
    plans: dict[str, Any] = tax["plans"]
    for gone in plans.keys() - obligations.keys():
        del plans[gone]
    findings = []
    for name, obligation in obligations.items():
        plan = plans.get(name)
        if plan is None:  # the obligation is new: remember the policy event that set it
            plan = plans[name] = {"since": now, "by": event["event_id"]}
        findings.extend(_judge(event, now, obligation, plan, state, ctx))
    return findings


def _judge(
    event: Event,
    now: int,
    obligation: dict[str, Any],
    plan: dict[str, Any],
    state: dict[str, Any],
    ctx: Context,
) -> list[Finding]:
    """Decide every period of one obligation whose deadline has passed at `now`."""
    quarterly = obligation["cadence"] == "quarterly"
    grace = ctx.config.tax_grace_days
    latest = _month_index(now)
    first = max(plan.get("done", _month_index(plan["since"]) - 3) + 1, latest - MAX_PERIODS)
    findings = []
    for index in range(first, latest + 1):
        if quarterly and index % 3 != 0:
            continue
        deadline = _ms(_deadline(index, obligation["due_day"], grace))
        if deadline > now:
            break
        plan["done"] = index
        start = _ms(_month_start(index))
        if deadline <= plan["since"] or start < state["from"]:
            continue  # the policy came after the deadline, or the history after the period began
        filings = state["tax"]["filings"].get(obligation["marketplace"], [])
        if any(start <= t < deadline for t in filings):
            continue
        findings.append(_missed(event, obligation, plan, start, deadline, filings, ctx))
    return findings


def _missed(
    event: Event,
    obligation: dict[str, Any],
    plan: dict[str, Any],
    start: int,
    deadline: int,
    filings: list[int],
    ctx: Context,
) -> Finding:
    site = obligation["marketplace"]
    policy = plan.get("by")
    source = f" set by event {policy}" if policy else ""
    period = format_ms(start)[:7]
    earlier = [t for t in filings if t < start]
    last = (
        f"the last filing before it was at {format_ms(earlier[-1])}"
        if earlier
        else "no earlier filing seen there"
    )
    if event["action"] == "tax.filing" and event.get("marketplace") == site:
        noticed = (
            f"The filing {event['event_id']} at {event['occurred_at']} came after the deadline."
        )
    else:
        noticed = (
            f"Noticed at event {event['event_id']} ({event['action']}, {event['occurred_at']}), the"
            " account's first event after the deadline, which is not itself at fault."
        )
    return Finding(
        detector=TAX,
        severity=ctx.config.severity(TAX, SEVERITY),
        key=f"{event['account_id']}|{site}|{obligation['cadence']}",
        window=format_ms(start),  # one alert per marketplace and period
        title=f"Tax filing for {site} ({obligation['cadence']}, period {period}) missed its due date",
        summary=(
            f"Account {event['account_id']} has no tax.filing for {site} between {format_ms(start)}"
            f" and the deadline {format_ms(deadline)} (policy{source}: {obligation['cadence']}, due"
            f" day {obligation['due_day']}, grace {ctx.config.tax_grace_days} days); {last}. {noticed}"
        ),
        response=TAX_RESPONSE,
        related=(policy,) if policy else (),
    )


# -- failed provider writes ----------------------------------------------------------------------


def _failed_writes(event: Event, now: int, state: dict[str, Any], ctx: Context) -> Finding | None:
    actor = event["actor"]
    if (
        actor["type"] != "provider"
        or event["outcome"] not in FAILED
        or not event["action"].startswith(WRITE_PREFIXES)
    ):
        return None
    cfg = ctx.config
    window_ms = cfg.failed_writes_window_minutes * 60_000
    need = max(1, cfg.failed_writes_min)
    recent = state.get("fw", [])
    newest = max([now] + [r[0] for r in recent])
    if now < newest - window_ms:
        return None  # older than the window: too late to count
    recent = sorted([*recent, [now, actor["provider_id"], event["action"]]])[-need:]
    state["fw"] = recent
    inside = [r for r in recent if r[0] >= newest - window_ms]
    if len(inside) < need:
        return None
    providers = sorted({r[1] for r in inside})
    actions = sorted({r[2] for r in inside})
    return Finding(
        detector=FAILED_WRITES,
        severity=cfg.severity(FAILED_WRITES, SEVERITY),
        key=event["account_id"],
        window=bucket(event["occurred_at"], cfg.suppression_minutes),
        title=f"{len(inside)} failed or denied provider writes in {cfg.failed_writes_window_minutes} min",
        summary=(
            f"Account {event['account_id']} saw at least {len(inside)} provider writes fail or be"
            f" denied within {cfg.failed_writes_window_minutes} minutes up to"
            f" {format_ms(newest)} (providers {', '.join(providers)}; actions"
            f" {', '.join(actions)}; latest {event['event_id']}, {event['outcome']})."
        ),
        response=SYNC_RESPONSE,
    )
