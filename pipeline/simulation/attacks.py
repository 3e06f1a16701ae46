"""Attack recipes the simulator injects among benign traffic: one per detector, labelled.

Each recipe returns the events of one attack instance (one or a short burst), starting at the
scene's clock. The events carry the attack kind as ground truth; `partnerwatch evaluate` checks
that the detector named like the kind raises an alert whose evidence includes them, and that no
alert names only benign events. Recipes use the world of `pipeline.simulation.traffic` (accounts, their
sites and SKUs, providers with office networks, grants published at the start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    import random

    from pipeline.simulation.world import Account, Principal, Provider

#: Report types holding buyer personal data (see detectors/rules/report_exfiltration.py).
PII_REPORT = "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL"
#: Foreign networks for stolen credentials, with the country geoip data places them in.
FOREIGN_NETS = {"RU": "5.45.207", "BR": "177.71.200", "VN": "113.160.10", "NG": "105.112.4", "CN": "36.110.1"}
#: Other European networks (SE, FR, NL), for IP churn that never leaves the continent.
CHURN_NETS = ("89.160.20", "62.210.16", "188.166.1")


@dataclass
class Scene:
    rng: random.Random
    account: Account
    provider: Provider
    principal: Principal
    stranger: Provider  # a provider with no grant on this account
    clock: int
    next_id: Callable[[], str]
    #: a seller's `permission.grant` re-issuing this provider's grant at a time, with changes
    regrant: Callable[[str, int, dict[str, Any]], Event]
    #: ids for the benign events of a scene (the history an attack needs), labelled benign
    benign_id: Callable[[], str]
    #: a `permission.grant` of this provider on another account (id, time, account)
    grant_on: Callable[[str, int, Account], Event]
    #: every account of the simulated world (cross-account attacks)
    world: list[Account] = field(default_factory=list)
    #: a `permission.grant` of any provider on any account (id, time, account, provider)
    grant: Callable[[str, int, Account, Provider], Event] | None = None

    def detached(self, tag: str) -> Account:
        """A fresh account like the scene's, for attacks that need more history than the stream.

        Its events lie before the scene's clock (an account the stream has not met yet), so the
        stream stays in event-time order per account and its benign world is untouched.
        """
        return replace(self.account, account_id=f"{self.account.account_id}-{tag}", prices=dict(self.account.prices))

    def detached_provider(self, tag: str, principals: int = 1) -> Provider:
        """A provider the stream has never met, with offices like the scene provider's, for attacks
        that need a provider's history over days (its events lie before the scene's clock)."""
        from pipeline.simulation.world import Principal, Provider

        pid = f"{self.provider.provider_id}-{tag}"
        nets = [p.office_net for p in self.provider.principals]
        return Provider(pid, [Principal(f"{pid}-user-{i}", nets[i % len(nets)]) for i in range(principals)])

    def granted(self, event_id: str, at: int, account: Account, provider: Provider) -> Event:
        """The seller of `account` grants `provider` the usual scopes (see traffic._grant_event)."""
        if self.grant is None:
            raise ValueError("the scene was built without a grant factory")
        return self.grant(event_id, at, account, provider)

    def event(
        self,
        at: int,
        action: str,
        actor: dict[str, str] | None = None,
        *,
        on: Account | None = None,
        event_id: str | None = None,
        **fields: Any,
    ) -> Event:
        """An event of the scene (on its account unless `on` names another), an attack event
        unless `event_id` is given (e.g. `benign_id()`)."""
        doc: Event = {
            "event_id": event_id or self.next_id(),
            "occurred_at": format_ms(at),
            "account_id": (on or self.account).account_id,
            "actor": actor or self.provider_actor(),
            "action": action,
        }
        doc.update(fields)
        return doc

    def provider_actor(self) -> dict[str, str]:
        return {"type": "provider", "provider_id": self.provider.provider_id, "principal_id": self.principal.principal_id}

    def seller_actor(self) -> dict[str, str]:
        return {"type": "seller", "principal_id": f"{self.account.account_id}-owner"}

    def office_ip(self) -> dict[str, str]:
        return {"ip": f"{self.principal.office_net}.{self.rng.randint(1, 254)}"}

    def foreign_ip(self, country: str | None = None) -> dict[str, str]:
        net = FOREIGN_NETS[country or self.rng.choice(sorted(FOREIGN_NETS))]
        return {"ip": f"{net}.{self.rng.randint(1, 254)}"}

    def site(self) -> str:
        return self.rng.choice(self.account.sites)

    def sku(self) -> dict[str, str]:
        return {"type": "listing", "id": self.rng.choice(self.account.skus)}


def ip_outside_allowlist(s: Scene) -> list[Event]:
    return [s.event(s.clock, "listing.update", marketplace=s.site(), resource=s.sku(), source=s.foreign_ip())]


def listing_out_of_scope(s: Scene) -> list[Event]:
    other = sorted({"US", "CA", "UK", "DE", "FR", "IT", "ES", "JP", "MX", "BR"} - set(s.account.sites))
    return [s.event(s.clock, "listing.update", marketplace=s.rng.choice(other), resource=s.sku(), source=s.office_ip())]


def price_change_over_limit(s: Scene) -> list[Event]:
    sku = s.sku()
    old = s.account.prices[sku["id"]]
    new = max(99, old * 35 // 100)  # a 65% price slash
    return [
        s.event(
            s.clock, "listing.price_change", marketplace=s.site(), resource=sku, source=s.office_ip(),
            operation="patchListingsItem",
            changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}],
        )
    ]


def approval_missing(s: Scene) -> list[Event]:
    return [s.event(s.clock, "listing.delete", marketplace=s.site(), resource=s.sku(), source=s.office_ip())]


def bulk_listing_burst(s: Scene) -> list[Event]:
    skus = s.rng.sample(s.account.skus, min(len(s.account.skus), 60))
    action = "listing.update"
    return [
        s.event(s.clock + i * 2_000, action, marketplace=s.site(), resource={"type": "listing", "id": sku}, source=s.office_ip())
        for i, sku in enumerate(skus)
    ]


def provider_sensitive_action(s: Scene) -> list[Event]:
    return [s.event(s.clock, "auth.credentials_create", source=s.office_ip(), operation="createCredentials")]


def provider_without_grant(s: Scene) -> list[Event]:
    intruder = s.stranger.principals[0]
    actor = {"type": "provider", "provider_id": s.stranger.provider_id, "principal_id": intruder.principal_id}
    return [
        s.event(s.clock, "report.download", actor=actor, source={"ip": f"{intruder.office_net}.9"},
                resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"})
    ]


def funds_without_approval(s: Scene) -> list[Event]:
    return [
        s.event(s.clock, "funds.refund", marketplace=s.site(), source=s.office_ip(),
                amount={"value": f"{s.rng.randint(50, 900)}.00", "currency": "EUR"})
    ]


def account_takeover_sequence(s: Scene) -> list[Event]:
    change = s.event(s.clock, "funds.bank_account_change", actor=s.seller_actor(), marketplace=s.site(),
                     source=s.foreign_ip(), changes=[{"field": "bank_account", "old": "****1234", "new": "****9876"}])
    payout = s.event(s.clock + 3_600_000, "funds.disbursement_request", actor=s.seller_actor(), marketplace=s.site(),
                     source=s.foreign_ip(), amount={"value": f"{s.rng.randint(5_000, 40_000)}.00", "currency": "EUR"})
    return [change, payout]


def refund_burst(s: Scene) -> list[Event]:
    return [
        s.event(s.clock + i * 60_000, "funds.refund", actor=s.seller_actor(), marketplace=s.site(),
                amount={"value": f"{s.rng.randint(20, 300)}.00", "currency": "EUR"})
        for i in range(15)
    ]


def api_rate_exceeded(s: Scene) -> list[Event]:
    return [
        s.event(s.clock + i * 1_500, "inventory.update", marketplace=s.site(), resource=s.sku(), source=s.office_ip(),
                changes=[{"field": "quantity", "old": 5, "new": 6}])
        for i in range(35)
    ]


def report_exfiltration(s: Scene) -> list[Event]:
    return [
        s.event(s.clock, "report.download", source=s.office_ip(), operation="getReportDocument",
                resource={"type": "report", "id": PII_REPORT})
    ]


def failed_writes_spike(s: Scene) -> list[Event]:
    return [
        s.event(s.clock + i * 30_000, "listing.update", marketplace=s.site(), resource=s.sku(), source=s.office_ip(),
                outcome="failure")
        for i in range(14)
    ]


def impossible_travel(s: Scene) -> list[Event]:
    home = s.event(s.clock, "auth.login", source=s.office_ip())
    away = s.event(s.clock + 120_000, "listing.update", marketplace=s.site(), resource=s.sku(), source=s.foreign_ip("VN"))
    return [home, away]


def ip_churn(s: Scene) -> list[Event]:
    return [
        s.event(s.clock + i * 45_000, "listing.update", marketplace=s.site(), resource=s.sku(),
                source={"ip": f"{net}.{s.rng.randint(1, 254)}"})
        for i, net in enumerate([*sorted(FOREIGN_NETS.values()), *CHURN_NETS])
    ]


def new_country_or_asn(s: Scene) -> list[Event]:
    """A principal with a working history appears from a country it never used."""
    usual = [
        s.event(s.clock + i * 20_000, "listing.update", marketplace=s.site(), resource=s.sku(), source=s.office_ip())
        for i in range(25)
    ]
    return [*usual, s.event(s.clock + 26 * 20_000, "report.download", source=s.foreign_ip("BR"),
                            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"})]


def off_hours_activity(s: Scene) -> list[Event]:
    """The seller narrows the grant to office hours that exclude now; the provider acts anyway.

    The grant is restored right after, so the benign traffic that follows is not off-hours.
    """
    hour = s.clock // 3_600_000 % 24
    hours = {"tz": "UTC", "start": f"{(hour + 10) % 24:02d}:00", "end": f"{(hour + 14) % 24:02d}:00"}
    return [
        s.regrant(s.next_id(), s.clock, {"active_hours": hours}),
        s.event(s.clock + 1_000, "inventory.update", marketplace=s.site(), resource=s.sku(), source=s.office_ip(),
                changes=[{"field": "quantity", "old": 3, "new": 30}]),
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
        at, "ads.campaign_update", on=account, event_id=event_id, marketplace=s.site(), source=s.office_ip(),
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
    month = datetime.fromtimestamp(s.clock / 1000, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if s.clock - month.timestamp() * 1000 < 26 * 3_600_000:  # too early in this month: use the last one
        month = (month - timedelta(days=1)).replace(day=1)
    begins = int(month.timestamp() * 1000)
    site = s.site()
    owner = {"type": "seller", "principal_id": f"{account.account_id}-owner"}
    policy = s.event(
        begins - 14 * 3_600_000, "policy.update", actor=owner, on=account,
        policy={"tax_filings": [{"marketplace": site, "cadence": "monthly", "due_day": 1}]},
    )
    work = [
        s.event(at, "listing.update", on=account, event_id=s.benign_id(), marketplace=site, resource=s.sku(),
                source=s.office_ip())
        for at in (begins + 9 * 3_600_000, s.clock)
    ]
    return [s.grant_on(s.benign_id(), begins - 15 * 3_600_000, account), policy, *work]


# -- across accounts and across days (detectors/provider_wide/) ---------------------------------

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


def _actor(provider: Provider, principal: Principal) -> dict[str, str]:
    return {"type": "provider", "provider_id": provider.provider_id, "principal_id": principal.principal_id}


def cross_account_spray(s: Scene) -> list[Event]:
    """The scene principal's credential, from a Chinese network no scene used before, downloads
    a listings report on every account of the world and on fresh ones (nine in all) within six
    minutes.

    Principals here work every account of their provider each window (up to four), so the spray
    reaches twice that and more: the rule's bar is its own usual accounts per window x 2.
    """
    targets = [*s.world] or [s.account]
    targets += [s.detached(f"S{s.clock % 100_000}-{i}") for i in range(max(0, 9 - len(targets)))]
    ip = {"ip": f"36.110.{s.rng.randint(10, 250)}.{s.rng.randint(1, 254)}"}  # a Chinese /24 of its own
    return [
        s.event(s.clock + i * 40_000, "report.download", on=account, source=ip, operation="getReportDocument",
                resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"})
        for i, account in enumerate(targets)
    ]


def cross_account_price_cuts(s: Scene) -> list[Event]:
    """The provider's principals cut two prices by 15-25% on each of four sellers within half an
    hour: every cut under the grants' 30% limit. The sellers are fresh accounts granted to the
    provider an hour before (the stream's own accounts keep their prices)."""
    tag = f"P{s.clock % 100_000}"
    accounts = [s.detached(f"{tag}-{i}") for i in range(4)]
    events = [s.grant_on(s.benign_id(), s.clock - _HOUR_MS + i * 1_000, account) for i, account in enumerate(accounts)]
    for i, account in enumerate(accounts):
        for j in range(2):
            principal = s.provider.principals[(i + j) % len(s.provider.principals)]
            sku = s.rng.choice(account.skus)
            old = account.prices[sku]
            new = old * (100 - s.rng.randint(15, 25)) // 100
            account.prices[sku] = new
            events.append(
                s.event(
                    s.clock + (i * 2 + j) * 210_000, "listing.price_change", _actor(s.provider, principal),
                    on=account, marketplace=s.rng.choice(account.sites), resource={"type": "listing", "id": sku},
                    source={"ip": f"{principal.office_net}.{s.rng.randint(1, 254)}"}, operation="patchListingsItem",
                    changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}],
                )
            )
    return events


def low_and_slow_exfiltration(s: Scene) -> list[Event]:
    """A provider that downloads four reports a day for a week downloads twenty a day for the
    last three days, two an hour across two sellers and principals: under every hourly bar.

    A provider's daily baseline needs days of history, longer than the stream: the scene brings a
    provider and two sellers of its own, their events before the scene's clock; the week is
    benign, the three heavy days are the attack.
    """
    tag = f"L{s.clock % 100_000}"
    provider = s.detached_provider(tag, principals=2)
    accounts = [s.detached(f"{tag}-{i}") for i in range(2)]
    today = s.clock - s.clock % _DAY_MS
    events = [s.granted(s.benign_id(), today - 11 * _DAY_MS + i * 1_000, a, provider) for i, a in enumerate(accounts)]
    reports = ("GET_MERCHANT_LISTINGS_ALL_DATA", "GET_FLAT_FILE_OPEN_LISTINGS_DATA", "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE")
    for day in range(10, 0, -1):
        heavy = day <= 3
        for n in range(20 if heavy else 4):
            principal = provider.principals[n % 2]
            at = today - day * _DAY_MS + 8 * _HOUR_MS + n * (10 * _HOUR_MS // (20 if heavy else 4)) + s.rng.randint(0, 60_000)
            events.append(
                s.event(
                    at, "report.download", _actor(provider, principal), on=accounts[n % 2],
                    event_id=None if heavy else s.benign_id(), operation="getReportDocument",
                    source={"ip": f"{principal.office_net}.{s.rng.randint(1, 254)}"},
                    resource={"type": "report", "id": reports[n % len(reports)]},
                )
            )
    return events


def dormant_reactivation(s: Scene) -> list[Event]:
    """A provider principal that worked a seller's listings for three weeks, then fell silent for
    five, changes prices from a Nigerian network. Its history is its own (a provider and seller
    the stream has not met, before the scene's clock); the three price changes are the attack."""
    tag = f"D{s.clock % 100_000}"
    provider = s.detached_provider(tag)
    principal = provider.principals[0]
    account = s.detached(tag)
    actor = _actor(provider, principal)
    day0 = s.clock - s.clock % _DAY_MS - 56 * _DAY_MS
    events = [s.granted(s.benign_id(), day0, account, provider)]
    for day in range(21):
        for n in range(3):
            at = day0 + day * _DAY_MS + (9 + 3 * n) * _HOUR_MS + s.rng.randint(0, 600_000)
            events.append(
                s.event(at, "listing.update", actor, on=account, event_id=s.benign_id(), marketplace=s.rng.choice(account.sites),
                        resource={"type": "listing", "id": s.rng.choice(account.skus)}, operation="putListingsItem",
                        source={"ip": f"{principal.office_net}.{s.rng.randint(1, 254)}"})
            )
    ip = s.foreign_ip("NG")
    for n in range(3):
        sku = s.rng.choice(account.skus)
        old = account.prices[sku]
        new = old * 96 // 100
        events.append(
            s.event(s.clock + n * 30_000, "listing.price_change", actor, on=account, marketplace=s.rng.choice(account.sites),
                    resource={"type": "listing", "id": sku}, source=ip, operation="patchListingsItem",
                    changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}])
        )
    return events


def grant_then_abuse(s: Scene) -> list[Event]:
    """The seller's grant is widened to a marketplace the provider never had, and within ten
    minutes the provider rewrites thirty listings there; the grant is put back afterwards."""
    extra = sorted({"US", "CA", "UK", "DE", "FR", "IT", "ES", "JP"} - set(s.account.sites))
    site = s.rng.choice(extra)
    events = [s.regrant(s.next_id(), s.clock, {"marketplaces": [*s.account.sites, site]})]
    skus = s.rng.sample(s.account.skus, min(30, len(s.account.skus)))
    events += [
        s.event(s.clock + 10_000 + i * 20_000, "listing.update", marketplace=site, resource={"type": "listing", "id": sku},
                source=s.office_ip(), operation="putListingsItem")
        for i, sku in enumerate(skus)
    ]
    return [*events, s.regrant(s.next_id(), s.clock + 10_000 + len(skus) * 20_000, {})]


def concurrent_sessions(s: Scene) -> list[Event]:
    """The principal works from its office in session `s-<principal>-<hour>` (a benign event);
    forty seconds later the same session acts from Vietnam on another of the world's accounts."""
    session = f"s-{s.principal.principal_id}-{s.clock // _HOUR_MS}"
    home = s.event(s.clock, "report.download", event_id=s.benign_id(), operation="getReportDocument",
                   source={**s.office_ip(), "session_id": session},
                   resource={"type": "report", "id": "GET_FLAT_FILE_OPEN_LISTINGS_DATA"})
    other = s.rng.choice([a for a in s.world if a is not s.account] or [s.account])
    away = s.event(s.clock + 40_000, "report.download", on=other, operation="getReportDocument",
                   source={**s.foreign_ip("VN"), "session_id": session},
                   resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"})
    return [home, away]


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
