"""Reports leaving the account: an unusual volume of downloads, or buyer personal data.

Reports are how a partner (or whoever holds its token) takes the seller's data in bulk: the
catalogue and prices for a competitor, or the buyers' names and addresses. Two rules on
successful `report.download` events, whose `resource.id` names the SP-API report type:
- volume: one principal's downloads in a clock hour reach `report_downloads_min` and
  `report_baseline_factor` x its usual busy hour (detectors/rates.py: the second-highest of its
  previous active hours, known after a day of history; an hour that fired is not learned).
  Integrations differ by orders of magnitude, so without a day of baseline there is no
  "unusual" (a first-day grab of buyer data is still caught by the rule below). Any actor: a
  hijacked seller staff login exfiltrates the same way.
- buyer data: a provider downloads a report type in `BUYER_PII_REPORTS`.

`BUYER_PII_REPORTS` (detectors/reports.py) is Amazon's own list of restricted report types, the ones whose
getReportDocument needs a Restricted Data Token because they hold buyer PII (names, shipping
and billing addresses, phone numbers, buyer tax ids): the order shipping, invoicing, tax and
reconciliation reports, the Amazon-fulfilled shipments reports, Easy Ship documents and the VAT
and GST transaction reports; plus the VAT invoice data reports, which carry buyer names and
addresses. Deliberately left out: the All Orders reports (GET_FLAT_FILE_ALL_ORDERS_DATA_*: not
restricted, only ship-to city and postal code), listings and inventory reports (no buyer data),
and downloads that did not succeed (no data left; denied calls are the scope rule's business).
State: per principal, the current hour's count and latest download ids (a volume alert names the
hour's latest `rates.RECENT` downloads as evidence) and the bounded hourly history; principals idle
for `IDLE_HOURS` are forgotten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import rates
from detectors.reports import BUYER_PII_REPORTS
from detectors.responses import ABUSE, ROTATE
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "report_exfiltration"
SEVERITY = "high"
IDLE_HOURS = 30 * 24
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = ("report.download",)

RESPONSE = (
    "Ask the provider which job downloaded these reports and where the files are now; buyer"
    " personal data may have to be reported as a data breach (GDPR art. 33: 72 hours).",
    ROTATE,
    *ABUSE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    if event["action"] != "report.download" or event["outcome"] != "success":
        return []
    found = (_buyer_data(event, ctx), _volume(event, state, ctx))
    return [f for f in found if f is not None]


def _report(event: Event) -> str:
    return str(event.get("resource", {}).get("id", "(unnamed report)"))


def _who(actor: dict[str, str]) -> str:
    if actor["type"] == "provider":
        return f"Provider {actor['provider_id']} ({actor['principal_id']})"
    return f"{actor['type'].capitalize()} {actor['principal_id']}"


def _buyer_data(event: Event, ctx: Context) -> Finding | None:
    actor = event["actor"]
    report = _report(event)
    if actor["type"] != "provider" or report not in BUYER_PII_REPORTS:
        return None
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{actor['principal_id']}|buyer-data",
        title=f"Provider {actor['provider_id']} downloaded buyer personal data ({report})",
        summary=(
            f"{_who(actor)} downloaded {report} on account {event['account_id']} at"
            f" {event['occurred_at']} (event {event['event_id']}); this report type holds buyer"
            " names, addresses or tax ids (an SP-API restricted report)."
        ),
        response=RESPONSE,
    )


def _volume(event: Event, state: dict[str, Any], ctx: Context) -> Finding | None:
    actor = event["actor"]
    principal = actor["principal_id"]
    hour = ctx.epoch_ms(event["occurred_at"]) // 3_600_000
    mine = rates.count(state.setdefault("p", {}), principal, hour, IDLE_HOURS, event["event_id"])
    if mine is None:
        return None  # a late event of a closed hour
    usual, count, cfg = rates.usual_hour(mine), mine["n"], ctx.config
    if (
        usual is None
        or count < cfg.report_downloads_min
        or count < cfg.report_baseline_factor * usual
    ):
        return None
    mine["fired"] = True
    start = bucket(event["occurred_at"], 60)
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{principal}|volume",
        window=start,
        title=f"{count} report downloads in an hour by {principal}",
        summary=(
            f"{_who(actor)} downloaded {count} reports on account {event['account_id']} in the"
            f" hour from {start} (latest {_report(event)}, event {event['event_id']}); its usual"
            f" busy hour has {usual} (second-highest of {len(mine['hist'])} previous active"
            f" hours). Thresholds: at least {cfg.report_downloads_min} and"
            f" {cfg.report_baseline_factor:g}x the usual busy hour."
        ),
        response=RESPONSE,
        related=rates.hour_evidence(mine, event["event_id"]),
    )
