"""The behavioural episodes of pipeline/simulation/behaviour.py: what each kind's events look like.

Every recipe takes (rng, who, world, begins, next_id, scale): the principal picked for the
episode, what the benign stream has shown so far (principals, networks, SKUs and prices), the
episode's start (ms), the id maker, and the stream's rate against 1,800 events an hour; it returns
the episode's events, each inside every rule's limits. `approved_sale` is a benign lookalike, not
an anomaly: a price cut the seller approved beforehand.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.event import Event, format_ms

HOUR = 3_600_000


@dataclass
class Who:
    account: str
    provider: str
    principal: str
    net: str = ""
    sites: list[str] = field(default_factory=list)


@dataclass
class World:
    """What the benign stream has shown so far: principals, their networks, SKUs and prices."""

    who: dict[tuple[str, str], Who] = field(default_factory=dict)
    skus: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> sku -> cents

    def see(self, event: Event) -> None:
        actor = event["actor"]
        account = event["account_id"]
        if actor["type"] == "provider":
            w = self.who.setdefault(
                (account, actor["principal_id"]),
                Who(account, actor["provider_id"], actor["principal_id"]),
            )
            ip = event.get("source", {}).get("ip", "")
            if ip and not w.net:
                w.net = ip.rsplit(".", 1)[0]
            site = event.get("marketplace")
            if site and site not in w.sites:
                w.sites.append(site)
        resource = event.get("resource")
        if resource and resource.get("type") == "listing":
            prices = self.skus.setdefault(account, {})
            price = prices.get(resource["id"], 0)
            for change in event.get("changes", ()):
                if change["field"] == "price":
                    price = round(float(change["new"]) * 100)
            prices[resource["id"]] = price or 1999


def _event(
    who: Who, rng: random.Random, at: int, event_id: str, action: str, **fields: Any
) -> Event:
    doc: Event = {
        "event_id": event_id,
        "occurred_at": format_ms(at),
        "account_id": who.account,
        "actor": {"type": "provider", "provider_id": who.provider, "principal_id": who.principal},
        "source": {
            "ip": f"{who.net}.{rng.randint(1, 254)}",
            "user_agent": "python-sp-api/1.8.0",
            "session_id": f"s-{who.principal}-{at // HOUR}",
        },
        "action": action,
    }
    doc.update(fields)
    return doc


def _spread(begins: int, n: int, minutes: int = 50) -> list[int]:
    """`n` moments over `minutes` from `begins`, at least 20 s apart."""
    step = max(20_000, minutes * 60_000 // max(1, n))  # ≤ 3 a minute: the rate rule stays quiet
    return [begins + i * step for i in range(n)]


def price_erosion(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    prices = world.skus[who.account]
    skus = rng.sample(sorted(prices), min(len(prices), 12))
    events = []
    for hour in range(3):
        for at, sku in zip(_spread(begins + hour * HOUR, len(skus)), skus, strict=True):
            old = prices[sku]
            new = max(99, int(old * (1 - rng.uniform(0.15, 0.25))))
            prices[sku] = new
            events.append(
                _event(
                    who,
                    rng,
                    at,
                    next_id(),
                    "listing.price_change",
                    marketplace=rng.choice(who.sites or ["DE"]),
                    resource={"type": "listing", "id": sku},
                    operation="patchListingsItem",
                    changes=[
                        {"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}
                    ],
                )
            )
    return events


_DAY_MIX = (
    ("listing.update", 30),
    ("listing.price_change", 20),
    ("inventory.update", 25),
    ("ads.campaign_update", 10),
    ("report.download", 10),
    ("auth.login", 5),
)


def odd_hours(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    events = []
    for hour in range(3):
        for at in _spread(begins + hour * HOUR, int(100 * scale)):
            action = rng.choices([a for a, _ in _DAY_MIX], weights=[w for _, w in _DAY_MIX])[0]
            events.append(_work(rng, who, world, at, next_id(), action))
    return events


def report_growth(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    events = []
    for hour, downloads in enumerate((12, 20, 28, 36)):
        for at in _spread(begins + hour * HOUR, int(downloads * scale)):
            events.append(_work(rng, who, world, at, next_id(), "report.download"))
    return events


def action_mix(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    events = []
    for hour in range(2):
        for at in _spread(begins + hour * HOUR, int(45 * scale)):
            action = "auth.login" if rng.random() < 0.3 else "ads.campaign_update"
            events.append(_work(rng, who, world, at, next_id(), action))
    return events


def _work(rng: random.Random, who: Who, world: World, at: int, event_id: str, action: str) -> Event:
    """One ordinary-looking action of `who` (the simulator's shapes)."""
    fields: dict[str, Any] = {}
    if action.startswith(("listing.", "inventory.", "ads.")):
        fields["marketplace"] = rng.choice(who.sites or ["DE"])
    if action.startswith(("listing.", "inventory.")):
        prices = world.skus[who.account]
        sku = rng.choice(sorted(prices))
        fields["resource"] = {"type": "listing", "id": sku}
        if action == "listing.price_change":
            old = prices[sku]
            new = max(99, int(old * (1 + rng.uniform(-0.08, 0.08))))
            prices[sku] = new
            fields["changes"] = [
                {"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}
            ]
        elif action == "inventory.update":
            fields["changes"] = [
                {"field": "quantity", "old": rng.randint(0, 500), "new": rng.randint(0, 500)}
            ]
    elif action == "ads.campaign_update":
        budget = rng.randint(10, 200)
        fields["resource"] = {"type": "campaign", "id": f"cmp-{rng.randint(1, 40)}"}
        fields["changes"] = [
            {"field": "daily_budget", "old": f"{budget}.00", "new": f"{budget + 5}.00"}
        ]
    elif action == "report.download":
        fields["operation"] = "getReportDocument"
        fields["resource"] = {
            "type": "report",
            "id": rng.choice(
                ("GET_FLAT_FILE_OPEN_LISTINGS_DATA", "GET_MERCHANT_LISTINGS_ALL_DATA")
            ),
        }
    return _event(who, rng, at, event_id, action, **fields)


def _price_change(
    who: Who, rng: random.Random, at: int, event_id: str, sku: str, old: int, new: int, **extra: Any
) -> Event:
    return _event(
        who,
        rng,
        at,
        event_id,
        "listing.price_change",
        marketplace=rng.choice(who.sites or ["DE"]),
        resource={"type": "listing", "id": sku},
        operation="patchListingsItem",
        changes=[{"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}],
        **extra,
    )


#: multi_day_erosion: days, office hours (UTC) and cuts an hour across the provider's principals
EROSION_DAYS, EROSION_HOURS, EROSION_CUTS = 3, range(7, 19), 10


def multi_day_erosion(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    """Three days of office hours in which the provider's principals on the account take turns
    cutting prices by 2-8% each, ten cuts an hour between them: every move inside the benign
    +-8%, a few more an hour than usual for each principal, nothing any hour shows; a day of it
    holds some 120 cuts more than rises."""
    team = [
        w
        for _, w in sorted(world.who.items())
        if w.account == who.account and w.provider == who.provider and w.net
    ] or [who]
    prices = world.skus[who.account]
    events = []
    n = 0
    day0 = begins - begins % (24 * HOUR)
    for day in range(EROSION_DAYS):
        for hour in EROSION_HOURS:
            start = day0 + day * 24 * HOUR + hour * HOUR + rng.randint(0, 120_000)
            for at in _spread(start, max(1, round(EROSION_CUTS * scale)), minutes=55):
                member = team[n % len(team)]
                n += 1
                sku = rng.choice(sorted(prices))
                old = prices[sku]
                new = max(99, int(old * (1 - rng.uniform(0.02, 0.08))))
                prices[sku] = new
                events.append(_price_change(member, rng, at, next_id(), sku, old, new))
    return events


def approved_sale(
    rng: random.Random,
    who: Who,
    world: World,
    begins: int,
    next_id: Callable[[], str],
    scale: float,
) -> list[Event]:
    """A benign lookalike: the seller approves price changes for three hours (an
    `approval.grant`), and the principal cuts 30 SKUs by 35-45% -- past the grant's 30% limit,
    which the approval covers -- naming the approval on each."""
    approval_id = f"sale-{who.account}-{begins // HOUR}"
    owner = f"{who.account}-owner"
    events: list[Event] = [
        {
            "event_id": next_id(),
            "occurred_at": format_ms(begins),
            "account_id": who.account,
            "actor": {"type": "seller", "principal_id": owner},
            "action": "approval.grant",
            "approval": {
                "approval_id": approval_id,
                "action": "listing.price_change",
                "approved_by": owner,
                "expires_at": format_ms(begins + 3 * HOUR),
            },
        }
    ]
    prices = world.skus[who.account]
    skus = rng.sample(sorted(prices), min(len(prices), 30))
    for at, sku in zip(_spread(begins + 60_000, len(skus)), skus, strict=True):
        old = prices[sku]
        new = max(99, int(old * (1 - rng.uniform(0.35, 0.45))))
        prices[sku] = new
        events.append(
            _price_change(who, rng, at, next_id(), sku, old, new, approval_id=approval_id)
        )
    return events


RECIPES: dict[
    str, Callable[[random.Random, Who, World, int, Callable[[], str], float], list[Event]]
] = {
    "price_erosion": price_erosion,
    "odd_hours": odd_hours,
    "report_growth": report_growth,
    "action_mix": action_mix,
    "multi_day_erosion": multi_day_erosion,
    "approved_sale": approved_sale,
}
