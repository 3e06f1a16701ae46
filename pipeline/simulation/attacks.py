"""Attack recipes the simulator injects among benign traffic: one per detector, labelled.

Each recipe returns the events of one attack instance (one or a short burst), starting at the
scene's clock. The events carry the attack kind as ground truth; `partnerwatch evaluate` checks
that the detector named like the kind raises an alert whose evidence includes them, and that no
alert names only benign events. Recipes use the world of `pipeline.simulation.traffic` (accounts, their
sites and SKUs, providers with office networks, grants published at the start), played in a
`Scene` (pipeline/simulation/scene.py); the recipes for the provider-wide rules are in
pipeline/simulation/provider_wide_attacks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pipeline.event import Event
from pipeline.simulation.provider_wide_attacks import (
    concurrent_sessions,
    cross_account_price_cuts,
    cross_account_spray,
    dormant_reactivation,
    grant_then_abuse,
    low_and_slow_exfiltration,
)
from pipeline.simulation.scene import CHURN_NETS, FOREIGN_NETS, Scene

if TYPE_CHECKING:
    from pipeline.simulation.world import Account

#: Report types holding buyer personal data (see detectors/rules/report_exfiltration.py).
PII_REPORT = "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL"


def ip_outside_allowlist(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock, "listing.update", marketplace=s.site(), resource=s.sku(), source=s.foreign_ip()
        )
    ]


def listing_out_of_scope(s: Scene) -> list[Event]:
    other = sorted(
        {"US", "CA", "UK", "DE", "FR", "IT", "ES", "JP", "MX", "BR"} - set(s.account.sites)
    )
    return [
        s.event(
            s.clock,
            "listing.update",
            marketplace=s.rng.choice(other),
            resource=s.sku(),
            source=s.office_ip(),
        )
    ]


def price_change_over_limit(s: Scene) -> list[Event]:
    sku = s.sku()
    old = s.account.prices[sku["id"]]
    new = max(99, old * 35 // 100)  # a 65% price slash
    return [
        s.event(
            s.clock,
            "listing.price_change",
            marketplace=s.site(),
            resource=sku,
            source=s.office_ip(),
            operation="patchListingsItem",
            changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}],
        )
    ]


def approval_missing(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock, "listing.delete", marketplace=s.site(), resource=s.sku(), source=s.office_ip()
        )
    ]


def bulk_listing_burst(s: Scene) -> list[Event]:
    skus = s.rng.sample(s.account.skus, min(len(s.account.skus), 60))
    action = "listing.update"
    return [
        s.event(
            s.clock + i * 2_000,
            action,
            marketplace=s.site(),
            resource={"type": "listing", "id": sku},
            source=s.office_ip(),
        )
        for i, sku in enumerate(skus)
    ]


def provider_sensitive_action(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock, "auth.credentials_create", source=s.office_ip(), operation="createCredentials"
        )
    ]


def provider_without_grant(s: Scene) -> list[Event]:
    intruder = s.stranger.principals[0]
    actor = {
        "type": "provider",
        "provider_id": s.stranger.provider_id,
        "principal_id": intruder.principal_id,
    }
    return [
        s.event(
            s.clock,
            "report.download",
            actor=actor,
            source={"ip": f"{intruder.office_net}.9"},
            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
        )
    ]


def funds_without_approval(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock,
            "funds.refund",
            marketplace=s.site(),
            source=s.office_ip(),
            amount={"value": f"{s.rng.randint(50, 900)}.00", "currency": "EUR"},
        )
    ]


def account_takeover_sequence(s: Scene) -> list[Event]:
    change = s.event(
        s.clock,
        "funds.bank_account_change",
        actor=s.seller_actor(),
        marketplace=s.site(),
        source=s.foreign_ip(),
        changes=[{"field": "bank_account", "old": "****1234", "new": "****9876"}],
    )
    payout = s.event(
        s.clock + 3_600_000,
        "funds.disbursement_request",
        actor=s.seller_actor(),
        marketplace=s.site(),
        source=s.foreign_ip(),
        amount={"value": f"{s.rng.randint(5_000, 40_000)}.00", "currency": "EUR"},
    )
    return [change, payout]


def refund_burst(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock + i * 60_000,
            "funds.refund",
            actor=s.seller_actor(),
            marketplace=s.site(),
            amount={"value": f"{s.rng.randint(20, 300)}.00", "currency": "EUR"},
        )
        for i in range(15)
    ]


def api_rate_exceeded(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock + i * 1_500,
            "inventory.update",
            marketplace=s.site(),
            resource=s.sku(),
            source=s.office_ip(),
            changes=[{"field": "quantity", "old": 5, "new": 6}],
        )
        for i in range(35)
    ]


def report_exfiltration(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock,
            "report.download",
            source=s.office_ip(),
            operation="getReportDocument",
            resource={"type": "report", "id": PII_REPORT},
        )
    ]


def failed_writes_spike(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock + i * 30_000,
            "listing.update",
            marketplace=s.site(),
            resource=s.sku(),
            source=s.office_ip(),
            outcome="failure",
        )
        for i in range(14)
    ]


def impossible_travel(s: Scene) -> list[Event]:
    home = s.event(s.clock, "auth.login", source=s.office_ip())
    away = s.event(
        s.clock + 120_000,
        "listing.update",
        marketplace=s.site(),
        resource=s.sku(),
        source=s.foreign_ip("VN"),
    )
    return [home, away]


def ip_churn(s: Scene) -> list[Event]:
    return [
        s.event(
            s.clock + i * 45_000,
            "listing.update",
            marketplace=s.site(),
            resource=s.sku(),
            source={"ip": f"{net}.{s.rng.randint(1, 254)}"},
        )
        for i, net in enumerate([*sorted(FOREIGN_NETS.values()), *CHURN_NETS])
    ]


def new_country_or_asn(s: Scene) -> list[Event]:
    """A principal with a working history appears from a country it never used."""
    usual = [
        s.event(
            s.clock + i * 20_000,
            "listing.update",
            marketplace=s.site(),
            resource=s.sku(),
            source=s.office_ip(),
        )
        for i in range(25)
    ]
    return [
        *usual,
        s.event(
            s.clock + 26 * 20_000,
            "report.download",
            source=s.foreign_ip("BR"),
            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
        ),
    ]


def off_hours_activity(s: Scene) -> list[Event]:
    """The seller narrows the grant to office hours that exclude now; the provider acts anyway.

    The grant is restored right after, so the benign traffic that follows is not off-hours.
    """
    hour = s.clock // 3_600_000 % 24
    hours = {
        "tz": "UTC",
        "start": f"{(hour + 10) % 24:02d}:00",
        "end": f"{(hour + 14) % 24:02d}:00",
    }
    return [
        s.regrant(s.next_id(), s.clock, {"active_hours": hours}),
        s.event(
            s.clock + 1_000,
            "inventory.update",
            marketplace=s.site(),
            resource=s.sku(),
            source=s.office_ip(),
            changes=[{"field": "quantity", "old": 3, "new": 30}],
        ),
        s.regrant(s.next_id(), s.clock + 2_000, {}),
    ]


def api_rate_sustained(s: Scene) -> list[Event]:
    """A provider with a day of modest use (3 hours of 20 requests) sends 130 in the scene's hour.

    The rule learns a provider's usual busy hour over at least a day, longer than evaluate's
    stream, so the scene brings its own history on a detached account; its 12 requests per
    minute stay under the per-minute limit, and campaign edits touch no listing SKUs.
    """
    account = s.detached(f"R{s.clock % 100_000}")
    events = [s.grant_on(s.benign_id(), s.clock - 26 * 3_600_000, account)]
    for hours_before in (25, 13, 2):
        at = s.clock - hours_before * 3_600_000
        events += [_campaign_edit(s, account, at + i * 30_000, s.benign_id()) for i in range(20)]
    hour = s.clock - s.clock % 3_600_000
    return events + [_campaign_edit(s, account, hour + i * 5_000, s.next_id()) for i in range(130)]


def _campaign_edit(s: Scene, account: Account, at: int, event_id: str) -> Event:
    budget = s.rng.randint(10, 200)
    return s.event(
        at,
        "ads.campaign_update",
        on=account,
        event_id=event_id,
        marketplace=s.site(),
        source=s.office_ip(),
        resource={"type": "campaign", "id": f"cmp-{s.rng.randint(1, 40)}"},
        changes=[{"field": "daily_budget", "old": f"{budget}.00", "new": f"{budget + 5}.00"}],
    )


def tax_filing_missed(s: Scene) -> list[Event]:
    """An account whose policy expects a monthly filing by the 1st, and none arrives.

    An absence is only seen once its deadline passes: the scene's account (detached, its history
    before the scene's clock) gets the obligation the day before a month starts, works through
    the due day without filing, and its next event after the deadline reveals the miss. The
    ground truth is the `policy.update` that set the obligation; the alert names it as evidence.
    """
    account = s.detached(f"T{s.clock % 100_000}")
    month = datetime.fromtimestamp(s.clock / 1000, UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    if (
        s.clock - month.timestamp() * 1000 < 26 * 3_600_000
    ):  # too early in this month: use the last one
        month = (month - timedelta(days=1)).replace(day=1)
    begins = int(month.timestamp() * 1000)
    site = s.site()
    owner = {"type": "seller", "principal_id": f"{account.account_id}-owner"}
    policy = s.event(
        begins - 14 * 3_600_000,
        "policy.update",
        actor=owner,
        on=account,
        policy={"tax_filings": [{"marketplace": site, "cadence": "monthly", "due_day": 1}]},
    )
    work = [
        s.event(
            at,
            "listing.update",
            on=account,
            event_id=s.benign_id(),
            marketplace=site,
            resource=s.sku(),
            source=s.office_ip(),
        )
        for at in (begins + 9 * 3_600_000, s.clock)
    ]
    return [s.grant_on(s.benign_id(), begins - 15 * 3_600_000, account), policy, *work]


RECIPES: dict[str, Callable[[Scene], list[Event]]] = {
    "ip_outside_allowlist": ip_outside_allowlist,
    "listing_out_of_scope": listing_out_of_scope,
    "price_change_over_limit": price_change_over_limit,
    "approval_missing": approval_missing,
    "bulk_listing_burst": bulk_listing_burst,
    "provider_sensitive_action": provider_sensitive_action,
    "provider_without_grant": provider_without_grant,
    "funds_without_approval": funds_without_approval,
    "account_takeover_sequence": account_takeover_sequence,
    "refund_burst": refund_burst,
    "api_rate_exceeded": api_rate_exceeded,
    "report_exfiltration": report_exfiltration,
    "failed_writes_spike": failed_writes_spike,
    "impossible_travel": impossible_travel,
    "ip_churn": ip_churn,
    "new_country_or_asn": new_country_or_asn,
    "off_hours_activity": off_hours_activity,
    "api_rate_sustained": api_rate_sustained,
    "tax_filing_missed": tax_filing_missed,
    "cross_account_spray": cross_account_spray,
    "cross_account_price_cuts": cross_account_price_cuts,
    "low_and_slow_exfiltration": low_and_slow_exfiltration,
    "dormant_reactivation": dormant_reactivation,
    "grant_then_abuse": grant_then_abuse,
    "concurrent_sessions": concurrent_sessions,
}
