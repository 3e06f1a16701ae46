"""Quarterly provider review: one self-contained HTML file for a seller's compliance review.

What one provider did on one account in a quarter (event time): activity by type per week,
alerts by severity and detector with the seller's response time, source IPs and countries,
the price-change distribution, and tables of grants, alerts, fund moves and IPs. This module
collects the figures; pipeline/forensics/review_report.py renders them (inline SVG charts,
loading nothing from anywhere; figures carry `data-metric` / `data-value` attributes so a test
can read them back).

The warehouse and the IP-to-country lookup are passed in (`country_of`), so this module needs
neither `sinks` nor `detectors`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from pipeline.forensics.chain_check import SqlReader, ch_ms, iso_of_ch

SEVERITIES = ("critical", "high", "medium", "low", "info")
PRICE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< -50%", float("-inf"), -50),
    ("-50..-20%", -50, -20),
    ("-20..-5%", -20, -5),
    ("-5..+5%", -5, 5),
    ("+5..+20%", 5, 20),
    ("+20..+50%", 20, 50),
    ("> +50%", 50, float("inf")),
)
_WHERE = (
    " FROM audit.events WHERE account_id = {account:String} AND provider_id = {provider:String}"
    " AND occurred_at >= toDateTime64({start:String}, 3, 'UTC') AND occurred_at < toDateTime64({end:String}, 3, 'UTC')"
)
_ACTIVITY = f"SELECT toString(toMonday(occurred_at)) AS week, action, count(){_WHERE} GROUP BY week, action ORDER BY week, action"
_IPS = (
    "SELECT source_ip, count() AS n, toString(min(occurred_at)), toString(max(occurred_at)), uniqExact(principal_id)"
    f"{_WHERE} GROUP BY source_ip ORDER BY n DESC, source_ip"
)
_PRINCIPALS = (
    f"SELECT principal_id, count() AS n{_WHERE} GROUP BY principal_id ORDER BY n DESC, principal_id"
)
_PRICES = f"SELECT toString(occurred_at), resource_id, marketplace, principal_id, changes{_WHERE} AND action = 'listing.price_change' ORDER BY occurred_at"
_FUNDS = (
    "SELECT toString(occurred_at), event_id, action, principal_id, amount_value, amount_currency, outcome, approval_id,"
    f" source_ip, marketplace{_WHERE} AND startsWith(action, 'funds.') ORDER BY occurred_at, event_id"
)
_GRANTS = (
    "SELECT toString(occurred_at), event_id, action, payload FROM audit.events WHERE account_id = {account:String}"
    " AND action IN ('permission.grant', 'permission.revoke') AND occurred_at < toDateTime64({end:String}, 3, 'UTC')"
    " ORDER BY occurred_at, event_id"
)
_ALERTS = (
    "SELECT alert_id, detector, severity, principal_id, title, toString(first_seen), toString(last_seen), count,"
    " length(evidence_event_ids) FROM audit.alerts FINAL WHERE account_id = {account:String} AND provider_id = {provider:String}"
    " AND first_seen >= toDateTime64({start:String}, 3, 'UTC') AND first_seen < toDateTime64({end:String}, 3, 'UTC')"
    " ORDER BY first_seen, alert_id"
)


def quarter_bounds(quarter: str) -> tuple[int, int]:
    """`2026Q3` -> epoch ms of 2026-07-01 and 2026-10-01 (UTC)."""
    match = re.fullmatch(r"(\d{4})[Qq]([1-4])", quarter.strip())
    if not match:
        raise ValueError(f"a quarter is written like 2026Q3, got {quarter!r}")
    year, q = int(match.group(1)), int(match.group(2))
    start = datetime(year, 3 * q - 2, 1, tzinfo=UTC)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@dataclass
class Review:
    """The figures of one provider's quarter on one account."""

    account: str
    provider: str
    quarter: str
    weeks: list[str] = field(default_factory=list)
    activity: dict[str, list[int]] = field(default_factory=dict)  # action family -> count per week
    actions: Counter[str] = field(default_factory=Counter)
    ips: list[list[Any]] = field(
        default_factory=list
    )  # ip, country, events, first, last, principals
    countries: Counter[str] = field(default_factory=Counter)
    principals: list[tuple[str, int]] = field(default_factory=list)
    price_changes: list[float] = field(default_factory=list)
    prices: list[list[Any]] = field(default_factory=list)
    funds: list[list[Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.actions.values())

    def metrics(self) -> dict[str, int]:
        severity = Counter(a["severity"] for a in self.alerts)
        return {
            "events": self.events,
            "principals": len(self.principals),
            "ips": len(self.ips),
            "countries": len(self.countries),
            "alerts": len(self.alerts),
            **{f"alerts_{s}": severity.get(s, 0) for s in SEVERITIES},
            "price_changes": len(self.prices),
            "fund_moves": len(self.funds),
            "grant_events": len(self.grants),
        }


def collect(
    db: SqlReader,
    account: str,
    provider: str,
    quarter: str,
    country_of: Callable[[str], str | None],
) -> Review:
    """Query the warehouse for the review's figures."""
    start, end = quarter_bounds(quarter)
    p = {"account": account, "provider": provider, "start": ch_ms(start), "end": ch_ms(end)}
    review = Review(account, provider, quarter)
    per_week: dict[str, Counter[str]] = defaultdict(Counter)
    for week, action, n in db.query(_ACTIVITY, p).rows:
        per_week[str(week)][str(action).split(".")[0]] += int(n)
        review.actions[str(action)] += int(n)
    review.weeks = sorted(per_week)
    families = sorted({f for c in per_week.values() for f in c})
    review.activity = {f: [per_week[w][f] for w in review.weeks] for f in families}
    for ip, n, first, last, principals in db.query(_IPS, p).rows:
        country = (country_of(str(ip)) if ip else None) or "unknown"
        review.ips.append(
            [
                str(ip) or "(none)",
                country,
                int(n),
                iso_of_ch(first),
                iso_of_ch(last),
                int(principals),
            ]
        )
        review.countries[country] += int(n)
    review.principals = [(str(r[0]), int(r[1])) for r in db.query(_PRINCIPALS, p).rows]
    for when, sku, site, principal, changes in db.query(_PRICES, p).rows:
        pct = _price_change_pct(str(changes))
        review.prices.append(
            [iso_of_ch(when), sku, site, principal, "" if pct is None else f"{pct:+.1f}%"]
        )
        if pct is not None:
            review.price_changes.append(pct)
    review.funds = [[iso_of_ch(r[0]), *r[1:]] for r in db.query(_FUNDS, p).rows]
    review.grants = _grants(db.query(_GRANTS, p).rows, provider)
    changes_after = [g["occurred_at"] for g in review.grants]
    for row in db.query(_ALERTS, p).rows:
        alert = dict(
            zip(
                (
                    "alert_id",
                    "detector",
                    "severity",
                    "principal_id",
                    "title",
                    "first_seen",
                    "last_seen",
                    "count",
                    "evidence",
                ),
                row,
                strict=True,
            )
        )
        alert["first_seen"], alert["last_seen"] = (
            iso_of_ch(alert["first_seen"]),
            iso_of_ch(alert["last_seen"]),
        )
        alert["response_hours"] = _response_hours(alert["first_seen"], changes_after)
        review.alerts.append(alert)
    return review


def _price_change_pct(changes: str) -> float | None:
    try:
        for change in orjson.loads(changes or "[]"):
            if change.get("field") == "price":
                old, new = Decimal(str(change["old"])), Decimal(str(change["new"]))
                return float((new - old) / old * 100) if old else None
    except (orjson.JSONDecodeError, InvalidOperation, KeyError, TypeError, AttributeError):
        return None
    return None


def _grants(rows: Sequence[Sequence[Any]], provider: str) -> list[dict[str, Any]]:
    """Grants of `provider` and revocations of them, oldest first."""
    mine: set[str] = set()
    out = []
    for when, event_id, action, payload in rows:
        grant = orjson.loads(payload).get("grant", {})
        if grant.get("provider_id") == provider:
            mine.add(grant["grant_id"])
        if grant.get("grant_id") in mine:
            out.append(
                {"occurred_at": iso_of_ch(when), "event_id": event_id, "action": action, **grant}
            )
    return out


def _response_hours(first_seen: str, changes: list[str]) -> float | None:
    """Hours from an alert to the seller's next grant change for the provider (None: none yet)."""
    later = [c for c in changes if c >= first_seen]
    if not later:
        return None
    return (_ms(min(later)) - _ms(first_seen)) / 3_600_000


def _ms(ts: str) -> int:
    from pipeline.event import timestamp_ms

    return timestamp_ms(ts, "time")


def price_histogram(changes: list[float]) -> list[tuple[str, float]]:
    return [(label, float(sum(1 for c in changes if lo <= c < hi))) for label, lo, hi in PRICE_BINS]
