"""Behavioural anomalies that no rule catches, overlaid on the simulator's benign stream.

`generate` yields `pipeline.simulation.traffic.generate`'s benign events unchanged (same seed, same events
and ids: other tests rely on that stream) and merges in, in event-time order, episodes of one
principal behaving unlike itself while staying inside every rule:
- `price_erosion`: the same few SKUs cut by 15-25% each hour for 3 hours (each move under the
  grant's 30% limit, a dozen SKUs an hour: no bulk burst);
- `odd_hours`: a full day's workload between 01:00 and 04:00 UTC (the benign grants set no
  `active_hours`, so the off-hours rule has nothing to say);
- `report_growth`: report downloads growing hour by hour, 12 -> 36 on top of the usual work
  (under the exfiltration rule's 5x the principal's busy hour, listing reports only);
- `action_mix`: two hours of mostly ads budget edits and logins from a listings principal.
Episodes use the principal's own office network and the account's sites and SKUs, at most one
event every 20 s (the per-minute rate rule stays quiet). Each episode event is labelled
`behaviour:<kind>` and its id ends in `-bhv<N>`, N numbering the episodes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.event import Event, format_ms
from pipeline.simulation.traffic import generate as benign_generate

KINDS: tuple[str, ...] = ("odd_hours", "price_erosion", "report_growth", "action_mix")
LABEL_PREFIX = "behaviour:"
HOUR = 3_600_000
DAY = 24 * HOUR
#: Start hour (UTC) of each kind's episodes.
START_HOUR = {"odd_hours": 1, "price_erosion": 7, "report_growth": 10, "action_mix": 15}
#: Hours an episode lasts (the next one starts after it).
HOURS = {"odd_hours": 3, "price_erosion": 3, "report_growth": 4, "action_mix": 2}


@dataclass
class _Who:
    account: str
    provider: str
    principal: str
    net: str = ""
    sites: list[str] = field(default_factory=list)


@dataclass
class _World:
    """What the benign stream has shown so far: principals, their networks, SKUs and prices."""

    who: dict[tuple[str, str], _Who] = field(default_factory=dict)
    skus: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> sku -> cents

    def see(self, event: Event) -> None:
        actor = event["actor"]
        account = event["account_id"]
        if actor["type"] == "provider":
            w = self.who.setdefault(
                (account, actor["principal_id"]),
                _Who(account, actor["provider_id"], actor["principal_id"]),
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


def generate(
    count: int,
    *,
    seed: int = 1,
    accounts: int = 6,
    providers: int = 4,
    events_per_hour: float = 1800.0,
    start: datetime | None = None,
    anomalies_after: int = 0,
    episodes: int = 8,
    kinds: tuple[str, ...] = KINDS,
) -> Iterator[tuple[Event, str | None]]:
    """`count` benign events plus `episodes` behavioural episodes, all in event-time order.

    Episodes start on the day after the first `anomalies_after` benign events, one kind after
    the other (round robin), each at its kind's hour of day once the previous one is over
    (the four kinds fit in one day); a principal with a working history is picked for each.
    """
    rng = random.Random(f"behaviour-{seed}")  # noqa: S311 (a seeded, reproducible simulation)
    world = _World()
    pending: list[tuple[int, int, Event, str]] = []  # (ms, order, event, label)
    order = 0
    planned = 0
    not_before: int | None = None
    begins = 0
    scale = events_per_hour / 1800.0
    for n, (event, truth) in enumerate(
        benign_generate(
            count,
            seed=seed,
            accounts=accounts,
            providers=providers,
            attack_kinds=(),
            start=start,
            events_per_hour=events_per_hour,
        )
    ):
        at = _ms(event["occurred_at"])
        while pending and pending[0][0] <= at:
            _, _, extra, label = heapq.heappop(pending)
            yield extra, label
        world.see(event)
        yield event, truth
        if n < anomalies_after or planned >= episodes:
            continue
        kind = kinds[planned % len(kinds)]
        if not_before is None:
            not_before = (at // DAY + 1) * DAY
        if not begins:
            # the first time of day START_HOUR[kind] not before `not_before`, plus a jitter
            day = not_before // DAY * DAY
            begins = day + START_HOUR[kind] * HOUR
            if begins < not_before:
                begins += DAY
            begins += rng.randint(0, 4) * 60_000  # the episode stays inside its clock hours
        if at < begins - HOUR:
            continue  # plan an episode an hour ahead: the world it draws on is recent
        candidates = [
            w for _, w in sorted(world.who.items()) if w.net and world.skus.get(w.account)
        ]
        if not candidates:
            continue
        planned += 1
        starts, begins = begins, 0
        not_before = starts + HOURS[kind] * HOUR
        who = rng.choice(candidates)
        ids = _ids(seed, planned)
        for extra in RECIPES[kind](rng, who, world, starts, ids, scale):
            order += 1
            heapq.heappush(pending, (_ms(extra["occurred_at"]), order, extra, LABEL_PREFIX + kind))
    while pending:
        _, _, extra, label = heapq.heappop(pending)
        yield extra, label


def _ids(seed: int, episode: int) -> Callable[[], str]:
    n = 0

    def next_id() -> str:
        nonlocal n
        n += 1
        return f"bhv-{seed}-{episode:04d}-{n:05d}-bhv{episode}"

    return next_id


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def _event(
    who: _Who, rng: random.Random, at: int, event_id: str, action: str, **fields: Any
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
    who: _Who,
    world: _World,
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
    who: _Who,
    world: _World,
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
    who: _Who,
    world: _World,
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
    who: _Who,
    world: _World,
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


def _work(
    rng: random.Random, who: _Who, world: _World, at: int, event_id: str, action: str
) -> Event:
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


RECIPES: dict[
    str, Callable[[random.Random, _Who, _World, int, Callable[[], str], float], list[Event]]
] = {
    "price_erosion": price_erosion,
    "odd_hours": odd_hours,
    "report_growth": report_growth,
    "action_mix": action_mix,
}
