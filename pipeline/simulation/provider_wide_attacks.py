"""Attack recipes across accounts and across days, for the provider-wide rules
(detectors/provider_wide/): labelled like `pipeline/simulation/attacks.py`, and listed in its
`RECIPES`.

A provider's baseline over days is longer than the stream: such recipes bring a provider and
sellers of their own (`Scene.detached`, `Scene.detached_provider`), their events before the scene's
clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.event import Event

if TYPE_CHECKING:
    from pipeline.simulation.scene import Scene
    from pipeline.simulation.world import Principal, Provider

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


def _actor(provider: Provider, principal: Principal) -> dict[str, str]:
    return {
        "type": "provider",
        "provider_id": provider.provider_id,
        "principal_id": principal.principal_id,
    }


def cross_account_spray(s: Scene) -> list[Event]:
    """The scene principal's credential, from a Chinese network no scene used before, downloads
    a listings report on every account of the world and on fresh ones (nine in all) within six
    minutes.

    Principals here work every account of their provider each window (up to four), so the spray
    reaches twice that and more: the rule's bar is its own usual accounts per window x 2.
    """
    targets = [*s.world] or [s.account]
    targets += [s.detached(f"S{s.clock % 100_000}-{i}") for i in range(max(0, 9 - len(targets)))]
    ip = {
        "ip": f"36.110.{s.rng.randint(10, 250)}.{s.rng.randint(1, 254)}"
    }  # a Chinese /24 of its own
    return [
        s.event(
            s.clock + i * 40_000,
            "report.download",
            on=account,
            source=ip,
            operation="getReportDocument",
            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
        )
        for i, account in enumerate(targets)
    ]


def cross_account_price_cuts(s: Scene) -> list[Event]:
    """The provider's principals cut two prices by 15-25% on each of four sellers within half an
    hour: every cut under the grants' 30% limit. The sellers are fresh accounts granted to the
    provider an hour before (the stream's own accounts keep their prices)."""
    tag = f"P{s.clock % 100_000}"
    accounts = [s.detached(f"{tag}-{i}") for i in range(4)]
    events = [
        s.grant_on(s.benign_id(), s.clock - _HOUR_MS + i * 1_000, account)
        for i, account in enumerate(accounts)
    ]
    for i, account in enumerate(accounts):
        for j in range(2):
            principal = s.provider.principals[(i + j) % len(s.provider.principals)]
            sku = s.rng.choice(account.skus)
            old = account.prices[sku]
            new = old * (100 - s.rng.randint(15, 25)) // 100
            account.prices[sku] = new
            events.append(
                s.event(
                    s.clock + (i * 2 + j) * 210_000,
                    "listing.price_change",
                    _actor(s.provider, principal),
                    on=account,
                    marketplace=s.rng.choice(account.sites),
                    resource={"type": "listing", "id": sku},
                    source={"ip": f"{principal.office_net}.{s.rng.randint(1, 254)}"},
                    operation="patchListingsItem",
                    changes=[
                        {"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}
                    ],
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
    events = [
        s.granted(s.benign_id(), today - 11 * _DAY_MS + i * 1_000, a, provider)
        for i, a in enumerate(accounts)
    ]
    reports = (
        "GET_MERCHANT_LISTINGS_ALL_DATA",
        "GET_FLAT_FILE_OPEN_LISTINGS_DATA",
        "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE",
    )
    for day in range(10, 0, -1):
        heavy = day <= 3
        for n in range(20 if heavy else 4):
            principal = provider.principals[n % 2]
            at = (
                today
                - day * _DAY_MS
                + 8 * _HOUR_MS
                + n * (10 * _HOUR_MS // (20 if heavy else 4))
                + s.rng.randint(0, 60_000)
            )
            events.append(
                s.event(
                    at,
                    "report.download",
                    _actor(provider, principal),
                    on=accounts[n % 2],
                    event_id=None if heavy else s.benign_id(),
                    operation="getReportDocument",
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
                s.event(
                    at,
                    "listing.update",
                    actor,
                    on=account,
                    event_id=s.benign_id(),
                    marketplace=s.rng.choice(account.sites),
                    resource={"type": "listing", "id": s.rng.choice(account.skus)},
                    operation="putListingsItem",
                    source={"ip": f"{principal.office_net}.{s.rng.randint(1, 254)}"},
                )
            )
    ip = s.foreign_ip("NG")
    for n in range(3):
        sku = s.rng.choice(account.skus)
        old = account.prices[sku]
        new = old * 96 // 100
        events.append(
            s.event(
                s.clock + n * 30_000,
                "listing.price_change",
                actor,
                on=account,
                marketplace=s.rng.choice(account.sites),
                resource={"type": "listing", "id": sku},
                source=ip,
                operation="patchListingsItem",
                changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}],
            )
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
        s.event(
            s.clock + 10_000 + i * 20_000,
            "listing.update",
            marketplace=site,
            resource={"type": "listing", "id": sku},
            source=s.office_ip(),
            operation="putListingsItem",
        )
        for i, sku in enumerate(skus)
    ]
    return [*events, s.regrant(s.next_id(), s.clock + 10_000 + len(skus) * 20_000, {})]


def concurrent_sessions(s: Scene) -> list[Event]:
    """The principal works from its office in session `s-<principal>-<hour>` (a benign event);
    forty seconds later the same session acts from Vietnam on another of the world's accounts."""
    session = f"s-{s.principal.principal_id}-{s.clock // _HOUR_MS}"
    home = s.event(
        s.clock,
        "report.download",
        event_id=s.benign_id(),
        operation="getReportDocument",
        source={**s.office_ip(), "session_id": session},
        resource={"type": "report", "id": "GET_FLAT_FILE_OPEN_LISTINGS_DATA"},
    )
    other = s.rng.choice([a for a in s.world if a is not s.account] or [s.account])
    away = s.event(
        s.clock + 40_000,
        "report.download",
        on=other,
        operation="getReportDocument",
        source={**s.foreign_ip("VN"), "session_id": session},
        resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
    )
    return [home, away]
