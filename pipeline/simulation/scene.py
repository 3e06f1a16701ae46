"""The scene an attack recipe plays in (pipeline/simulation/attacks.py): the attacked account,
provider and principal at the scene's clock, and factories for its events and grants.

Recipes use the world of `pipeline.simulation.traffic` (accounts, their sites and SKUs, providers
with office networks, grants published at the start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    import random

    from pipeline.simulation.world import Account, Principal, Provider

#: Foreign networks for stolen credentials, with the country geoip data places them in.
FOREIGN_NETS = {
    "RU": "5.45.207",
    "BR": "177.71.200",
    "VN": "113.160.10",
    "NG": "105.112.4",
    "CN": "36.110.1",
}
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
        return replace(
            self.account,
            account_id=f"{self.account.account_id}-{tag}",
            prices=dict(self.account.prices),
        )

    def detached_provider(self, tag: str, principals: int = 1) -> Provider:
        """A provider the stream has never met, with offices like the scene provider's, for attacks
        that need a provider's history over days (its events lie before the scene's clock)."""
        from pipeline.simulation.world import Principal, Provider

        pid = f"{self.provider.provider_id}-{tag}"
        nets = [p.office_net for p in self.provider.principals]
        return Provider(
            pid, [Principal(f"{pid}-user-{i}", nets[i % len(nets)]) for i in range(principals)]
        )

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
        return {
            "type": "provider",
            "provider_id": self.provider.provider_id,
            "principal_id": self.principal.principal_id,
        }

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
