"""A tax filing the account policy expects that did not happen by its due day.

Late VAT filings are a quiet way a partnership fails; not an attack, so medium, with the
talk-first response (`responses.DRIFT`). The account policy's `tax_filings` entries
(`{marketplace, cadence, due_day}`) say a `tax.filing` (successful, by any actor) is expected on
that marketplace in every period, by its due day. A period is a month (monthly) or a quarter starting in January, April, July or
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

Deliberately ignored: failed filings (not a filing), and events older than what was already
decided. State: when the account was first seen, the last filing times per marketplace
(bounded), and the last period decided per obligation.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from detectors.responses import DRIFT
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "tax_filing_missed"
SEVERITY = "medium"
#: Filings remembered per marketplace, and how many past periods one event may decide.
MAX_FILINGS = 24
MAX_PERIODS = 12
RESPONSE = (
    "Check with the tax agent whether the return was filed outside PartnerWatch's view; if not,"
    " file now and ask the tax office about late-filing penalties.",
    *DRIFT,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    now = ctx.epoch_ms(event["occurred_at"])
    state.setdefault("from", now)
    filed = event["action"] == "tax.filing" and event["outcome"] == "success"
    obligations = {
        f"{o['marketplace']}|{o['cadence']}|{o['due_day']}": o
        for o in ctx.auth["policy"].get("tax_filings", [])
    }
    if not filed and not obligations and "plans" not in state:
        return []
    filings: dict[str, list[int]] = state.setdefault("filings", {})
    if filed:
        site = event["marketplace"]
        filings[site] = sorted([*filings.get(site, []), now])[-MAX_FILINGS:]
    plans: dict[str, Any] = state.setdefault("plans", {})
    for gone in plans.keys() - obligations.keys():
        del plans[gone]
    findings = []
    for name, obligation in obligations.items():
        plan = plans.get(name)
        if plan is None:  # the obligation is new: remember the policy event that set it
            plan = plans[name] = {"since": now, "by": event["event_id"]}
        for start, deadline in _missed_periods(now, obligation, plan, state["from"], filings, ctx):
            findings.append(_finding(event, obligation, plan, start, deadline, filings, ctx))
    return findings


def _month_start(index: int) -> int:
    """Month `index` (months since year 0): its first instant, UTC, in epoch milliseconds."""
    return _ms(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC))


def _month_index(ms: int) -> int:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.year * 12 + moment.month - 1


def _deadline(index: int, due_day: int, grace_days: int) -> int:
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    last = calendar.monthrange(start.year, start.month)[1]
    return _ms(start + timedelta(days=min(due_day, last) + grace_days))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _missed_periods(
    now: int,
    obligation: dict[str, Any],
    plan: dict[str, Any],
    seen_from: int,
    filings: dict[str, list[int]],
    ctx: Context,
) -> list[tuple[int, int]]:
    """(start, deadline) of every period of one obligation newly decided at `now` as missed."""
    quarterly = obligation["cadence"] == "quarterly"
    latest = _month_index(now)
    first = max(plan.get("done", _month_index(plan["since"]) - 3) + 1, latest - MAX_PERIODS)
    missed = []
    for index in range(first, latest + 1):
        if quarterly and index % 3 != 0:
            continue
        deadline = _deadline(index, obligation["due_day"], ctx.config.tax_grace_days)
        if deadline > now:
            break
        plan["done"] = index
        start = _month_start(index)
        if deadline <= plan["since"] or start < seen_from:
            continue  # the policy came after the deadline, or the history after the period began
        if not any(start <= t < deadline for t in filings.get(obligation["marketplace"], [])):
            missed.append((start, deadline))
    return missed


def _finding(
    event: Event,
    obligation: dict[str, Any],
    plan: dict[str, Any],
    start: int,
    deadline: int,
    filings: dict[str, list[int]],
    ctx: Context,
) -> Finding:
    site = obligation["marketplace"]
    policy = plan.get("by")
    source = f" set by event {policy}" if policy else ""
    earlier = [t for t in filings.get(site, []) if t < start]
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
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{site}|{obligation['cadence']}",
        window=format_ms(start),  # one alert per marketplace and period
        title=f"Tax filing for {site} ({obligation['cadence']}, period {format_ms(start)[:7]}) missed its due date",
        summary=(
            f"Account {event['account_id']} has no tax.filing for {site} between {format_ms(start)}"
            f" and the deadline {format_ms(deadline)} (policy{source}: {obligation['cadence']}, due"
            f" day {obligation['due_day']}, grace {ctx.config.tax_grace_days} days); {last}. {noticed}"
        ),
        response=RESPONSE,
        related=(policy,) if policy else (),
    )
