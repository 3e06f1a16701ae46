"""A provider downloading more sensitive reports over days than it usually does, slowly.

Why: report_exfiltration counts one principal's downloads per hour on one account; a provider
that takes a little more every hour, over several principals and sellers, for days, stays under
it. Summed per provider across accounts and days, the same downloads stand out against the
provider's own usual days.

What counts: successful `report.download` events by a provider whose report type is sensitive
(detectors/reports.py: buyer data, catalogue, orders, inventory, sales, settlements), counted per
UTC day across the provider's accounts and principals. Once the provider has
`exfil_history_days` days of history before the current `exfil_days` (its first sensitive
download starts the history; days without downloads count as 0), the rule fires while the sum of
the last `exfil_days` days (today so far included) reaches both `exfil_min_reports` and
`exfil_baseline_factor` x the mean of its earlier days x `exfil_days`. Days of an episode that
fired are not learned as usual. Without that history there is no "usual", so no alert.

One alert per episode (window: the day it first fired); the evidence names the first sensitive
download of each day in the window and the latest ones, up to `RECENT`. State per provider: daily
counts for `KEEP_DAYS`, the first download id per day, the latest ids and the days that fired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import reports, responses
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "low_and_slow_exfiltration"
SEVERITY = "high"
KEEP_DAYS = 35
RECENT = 20
_DAY_MS = 86_400_000
RESPONSE = (
    "List the provider's report downloads of the named days with `partnerwatch sql` (audit.events,"
    " action report.download) and ask the provider which jobs made them and where the files went.",
    responses.ROTATE,
    *responses.ABUSE,
)


#: The actions this rule looks at, as prefixes (detectors/provider_wide/run.py calls it for no
#: other action).
ACTIONS = ("report.download",)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if (
        event["action"] != "report.download"
        or event["outcome"] != "success"
        or actor["type"] != "provider"
    ):
        return []
    report = str(event.get("resource", {}).get("id", ""))
    if not reports.sensitive(report):
        return []
    cfg = ctx.config
    today = ctx.epoch_ms(event["occurred_at"]) // _DAY_MS
    newest = max(today, state.get("newest", today))
    state["newest"] = newest
    state["since"] = min(state.get("since", today), today)
    days: dict[str, int] = state.setdefault("days", {})
    firsts: dict[str, str] = state.setdefault("first", {})
    if today <= newest - KEEP_DAYS:
        return []  # too old to matter
    days[str(today)] = days.get(str(today), 0) + 1
    firsts.setdefault(str(today), event["event_id"])
    for old in [d for d in days if int(d) <= newest - KEEP_DAYS]:
        days.pop(old)
        firsts.pop(old, None)
    latest = [*state.get("ids", [])[-(RECENT - 1) :], event["event_id"]]
    state["ids"] = latest
    fired_days: list[int] = state.get("fired", [])
    span = max(1, cfg.exfil_days)
    first_day = newest - span + 1
    window = sum(days.get(str(d), 0) for d in range(first_day, newest + 1))
    learned = [
        days.get(str(d), 0)
        for d in range(max(state["since"], newest - KEEP_DAYS + 1), first_day)
        if d not in fired_days
    ]
    if len(learned) < cfg.exfil_history_days or today < first_day:
        return []
    usual = sum(learned) / len(learned)
    need = max(cfg.exfil_min_reports, cfg.exfil_baseline_factor * usual * span)
    if window < need:
        state.pop("episode", None)
        return []
    fired_days = sorted({*fired_days, *range(first_day, newest + 1)})
    state["fired"] = [d for d in fired_days if d > newest - KEEP_DAYS]
    start = state.get("episode") or format_ms(newest * _DAY_MS)
    state["episode"] = start
    evidence = [firsts[str(d)] for d in range(first_day, newest + 1) if str(d) in firsts]
    evidence += [i for i in latest if i not in evidence][-max(0, RECENT - len(evidence)) :]
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=actor["provider_id"],
            window=start,
            title=f"Provider {actor['provider_id']} downloaded {window} sensitive reports in {span} days, {window / max(usual * span, 1):.1f}x its usual",
            summary=(
                f"Provider {actor['provider_id']} downloaded {window} sensitive reports across its"
                f" accounts in the {span} days up to {event['occurred_at']} (latest {report} on"
                f" {event['account_id']} by {actor['principal_id']}, event {event['event_id']});"
                f" its usual day has {usual:.1f} (mean of {len(learned)} earlier days). Thresholds:"
                f" at least {cfg.exfil_min_reports} and {cfg.exfil_baseline_factor:g}x the usual"
                f" days. The episode began on {start[:10]}."
            ),
            response=RESPONSE,
            related=tuple(i for i in evidence if i != event["event_id"]),
        )
    ]
