"""The simulated world: seller accounts, the agencies (providers) they delegate to, and their
principals (staff logins, SP-API clients), deterministic for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: European /16s the bundled GeoLite2 data places wholly in one country (DE, FR, NL, ES, IT):
#: agencies' offices. Attacks come from far away (pipeline/simulation/scene.py FOREIGN_NETS).
OFFICE_PREFIXES = (
    "91.64",
    "80.128",
    "86.192",
    "145.53",
    "88.0",
    "79.0",
    "84.57",
    "2.200",
    "46.114",
    "109.190",
    "151.15",
)

_SITES = ("US", "CA", "UK", "DE", "FR", "IT", "ES", "JP")


@dataclass
class Principal:
    principal_id: str
    office_net: str  # a /24 the provider's grant allows, e.g. "198.51.100"


@dataclass
class Provider:
    provider_id: str
    principals: list[Principal] = field(default_factory=list)


@dataclass
class Account:
    account_id: str
    sites: list[str]
    providers: list[Provider]
    skus: list[str]
    prices: dict[str, int]  # cents


def build_world(rng: random.Random, accounts: int, providers: int) -> list[Account]:
    agencies = []
    for p in range(providers):
        agency = Provider(f"prov-{p:03d}")
        for i in range(rng.randint(2, 3)):
            net = f"{rng.choice(OFFICE_PREFIXES)}.{rng.randint(0, 255)}"
            agency.principals.append(Principal(f"{agency.provider_id}-user-{i}", net))
        agencies.append(agency)
    world = []
    for a in range(accounts):
        skus = [f"SKU-{a:02d}-{n:04d}" for n in range(rng.randint(40, 120))]
        world.append(
            Account(
                account_id=f"A{a:04d}SELLER",
                sites=rng.sample(_SITES, rng.randint(2, 4)),
                providers=rng.sample(agencies, min(len(agencies), rng.randint(1, 2))),
                skus=skus,
                prices={s: rng.randint(500, 20000) for s in skus},
            )
        )
    return world
