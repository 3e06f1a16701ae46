"""Realistic co-operation partner traffic with injected attacks, deterministic for a seed.

Several seller accounts on several marketplaces delegate to agencies (providers) whose principals
(staff logins, SP-API clients) edit listings, prices, inventory and ads from their offices, more by
day than by night. Each account's grants are published first, as `permission.grant` events, so the
pipeline derives authorization from the log. Attacks are injected at `attack_rate`; each yielded
event carries its ground truth (`None` for benign traffic) for tests and evaluation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pipeline.event import Event, format_ms
from pipeline.simulation.attacks import RECIPES
from pipeline.simulation.scene import Scene
from pipeline.simulation.world import Account, Principal, Provider, build_world

#: Attack kinds the simulator can inject (ground truth labels, named like the detector that must fire).
ATTACKS = tuple(RECIPES)

#: Benign partners stay under the SP-API guidance of 20 requests per minute per account, in any
#: 60 seconds (a sliding minute can straddle two clock minutes).
BENIGN_MAX_PER_MINUTE = 10

_BENIGN_MIX = (
    ("listing.update", 30),
    ("listing.price_change", 20),
    ("inventory.update", 25),
    ("ads.campaign_update", 10),
    ("report.download", 10),
    ("auth.login", 5),
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "python-sp-api/1.8.0",
)


def _grant_event(
    event_id: str,
    at: int,
    account: Account,
    provider: Provider,
    extra: dict[str, Any] | None = None,
) -> Event:
    event: Event = {
        "event_id": event_id,
        "occurred_at": format_ms(at),
        "account_id": account.account_id,
        "actor": {"type": "seller", "principal_id": f"{account.account_id}-owner"},
        "action": "permission.grant",
        "grant": {
            "grant_id": f"g-{account.account_id}-{provider.provider_id}",
            "provider_id": provider.provider_id,
            "principals": [p.principal_id for p in provider.principals],
            "scopes": ["listing.*", "inventory.*", "ads.*", "report.download", "auth.login"],
            "marketplaces": list(account.sites),
            "ip_allowlist": [f"{p.office_net}.0/24" for p in provider.principals],
            "max_price_change_pct": 30,
            "require_approval": ["listing.delete"],
            **(extra or {}),
        },
    }
    return event


def _activity(hour: float) -> float:
    """Relative activity by hour of day: a day peak around 14:00, a quiet night."""
    return 0.15 + math.exp(-((hour - 14.0) ** 2) / 18.0)


def generate(
    count: int,
    *,
    seed: int = 1,
    accounts: int = 6,
    providers: int = 4,
    attack_rate: float = 0.01,
    attack_kinds: tuple[str, ...] = ("ip_outside_allowlist",),
    start: datetime | None = None,
    events_per_hour: float = 3600.0,
) -> Iterator[tuple[Event, str | None]]:
    """Yield `count` events as (event, attack kind or None), grants first, in event-time order.

    At `attack_rate` per benign event an attack of one of `attack_kinds` (see pipeline/simulation/attacks.py)
    is injected; its events' ids end in `-atk<N>`, N numbering the attack instances.
    """
    rng = random.Random(seed)  # noqa: S311 (a seeded, reproducible simulation)
    world = build_world(rng, accounts, providers)
    all_providers = sorted(
        {p.provider_id: p for a in world for p in a.providers}.values(), key=lambda p: p.provider_id
    )
    clock = int((start or datetime(2026, 11, 2, 6, 0, tzinfo=UTC)).timestamp() * 1000)
    n = 0
    instance = 0

    def next_id() -> str:
        nonlocal n
        n += 1
        return f"sim-{seed}-{n:09d}" + (f"-atk{instance}" if attacking else "")

    def benign_id() -> str:
        nonlocal n
        n += 1
        return f"sim-{seed}-{n:09d}"

    attacking = False
    for account in world:
        for provider in account.providers:
            if n >= count:
                return
            clock += rng.randint(100, 2000)
            yield _grant_event(next_id(), clock, account, provider), None

    yielded = n
    per_minute: dict[tuple[str, str, int], int] = {}
    while yielded < count:
        hour = (clock / 3_600_000) % 24
        gap_ms = rng.expovariate(events_per_hour * _activity(hour) / 3_600_000)
        clock += max(1, int(gap_ms))
        account = rng.choice(world)
        provider = rng.choice(account.providers)
        principal = rng.choice(provider.principals)
        if attack_kinds and rng.random() < attack_rate:
            instance += 1
            kind = attack_kinds[
                instance % len(attack_kinds)
            ]  # round robin: every kind gets its turns
            strangers = [p for p in all_providers if p not in account.providers] or all_providers
            attacking = True
            scene = Scene(
                rng,
                account,
                provider,
                principal,
                rng.choice(strangers),
                clock,
                next_id,
                partial(_regrant, account, provider),
                benign_id,
                partial(_grant_on, provider),
                world,
                _grant_to,
            )
            events = RECIPES[kind](scene)
            attacking = False
            for event in events[: count - yielded]:
                clock = max(clock, _ms(event["occurred_at"]))
                yielded += 1
                yield event, (kind if event["event_id"].endswith(f"-atk{instance}") else None)
            continue
        minute = (account.account_id, provider.provider_id, clock // 60_000)
        if per_minute.get(minute, 0) >= BENIGN_MAX_PER_MINUTE:
            clock = (
                clock // 60_000 + 1
            ) * 60_000  # a well-behaved partner waits for the next minute
        per_minute = {k: v for k, v in per_minute.items() if k[2] >= clock // 60_000 - 1}
        minute = (account.account_id, provider.provider_id, clock // 60_000)
        per_minute[minute] = per_minute.get(minute, 0) + 1
        yielded += 1
        yield _provider_action(rng, next_id(), clock, account, provider, principal, None), None


def _grant_on(provider: Provider, event_id: str, at: int, account: Account) -> Event:
    return _grant_event(event_id, at, account, provider)


def _grant_to(event_id: str, at: int, account: Account, provider: Provider) -> Event:
    return _grant_event(event_id, at, account, provider)


def _regrant(
    account: Account, provider: Provider, event_id: str, at: int, extra: dict[str, Any]
) -> Event:
    return _grant_event(event_id, at, account, provider, extra)


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def _provider_action(
    rng: random.Random,
    event_id: str,
    at: int,
    account: Account,
    provider: Provider,
    principal: Principal,
    attack: str | None,
) -> Event:
    action = rng.choices([a for a, _ in _BENIGN_MIX], weights=[w for _, w in _BENIGN_MIX])[0]
    if attack == "ip_outside_allowlist":
        ip = f"{rng.choice((5, 37, 91, 176, 194))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    else:
        ip = f"{principal.office_net}.{rng.randint(1, 254)}"
    event: Event = {
        "event_id": event_id,
        "occurred_at": format_ms(at),
        "account_id": account.account_id,
        "actor": {
            "type": "provider",
            "provider_id": provider.provider_id,
            "principal_id": principal.principal_id,
        },
        "source": {
            "ip": ip,
            "user_agent": rng.choice(_AGENTS),
            "session_id": f"s-{principal.principal_id}-{at // 3_600_000}",
        },
        "action": action,
    }
    if action.startswith(("listing.", "inventory.", "ads.")):
        event["marketplace"] = rng.choice(account.sites)
    if action.startswith(("listing.", "inventory.")):
        sku = rng.choice(account.skus)
        event["resource"] = {"type": "listing", "id": sku}
        if action == "listing.price_change":
            old = account.prices[sku]
            new = max(99, int(old * (1 + rng.uniform(-0.08, 0.08))))
            account.prices[sku] = new
            event["operation"] = "patchListingsItem"
            event["changes"] = [
                {"field": "price", "old": f"{old / 100:.2f}", "new": f"{new / 100:.2f}"}
            ]
        elif action == "inventory.update":
            event["operation"] = "patchListingsItem"
            event["changes"] = [
                {"field": "quantity", "old": rng.randint(0, 500), "new": rng.randint(0, 500)}
            ]
        else:
            event["operation"] = "putListingsItem"
    elif action == "ads.campaign_update":
        event["resource"] = {"type": "campaign", "id": f"cmp-{rng.randint(1, 40)}"}
        event["changes"] = [
            {
                "field": "daily_budget",
                "old": f"{rng.randint(10, 200)}.00",
                "new": f"{rng.randint(10, 200)}.00",
            }
        ]
    elif action == "report.download":
        event["operation"] = "getReportDocument"
        event["resource"] = {
            "type": "report",
            "id": rng.choice(
                ("GET_FLAT_FILE_OPEN_LISTINGS_DATA", "GET_MERCHANT_LISTINGS_ALL_DATA")
            ),
        }
    return event


def disordered(
    stream: list[tuple[Event, str | None]], seconds: float, seed: int
) -> list[tuple[Event, str | None]]:
    """`stream` in the order it would arrive with up to `seconds` of arrival disorder.

    Every event arrives a uniformly random delay of up to `seconds` after it occurred, and events
    are sent in arrival order, so one account's events arrive out of event-time order by up to
    `seconds` (a scene's history from days before arrives when it occurred, long before the
    scene). One order is kept: an account's authorization events (grants, revokes, approvals,
    policy) neither overtake the account's earlier events nor are overtaken by its later ones,
    because the gateway admits a provider's call only once it has seen the grant that allows it
    (sources/gateway follows the ledger), and a seller's change is recorded after what came before
    it. Deterministic for a seed.
    """
    from pipeline.authorization import AUTHORIZATION_ACTIONS

    rng = random.Random(f"disorder-{seed}")  # noqa: S311 (a seeded, reproducible simulation)
    barrier: dict[str, float] = {}
    latest: dict[str, float] = {}
    keyed = []
    for n, (event, kind) in enumerate(stream):
        account = str(event.get("account_id", ""))
        key = _ms(event["occurred_at"]) + rng.uniform(0, seconds * 1000)
        if event.get("action") in AUTHORIZATION_ACTIONS:
            key = max(key, latest.get(account, key))
            barrier[account] = key
        else:
            key = max(key, barrier.get(account, key))
        latest[account] = max(latest.get(account, key), key)
        keyed.append((key, n, event, kind))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(event, kind) for _, _, event, kind in keyed]
