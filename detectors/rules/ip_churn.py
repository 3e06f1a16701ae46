"""One provider principal appearing from many different networks within an hour.

Why: a credential that leaked to several people, or is driven through a residential-proxy pool
or a botnet, shows up as one principal acting from many unrelated networks in a short time; a
person or an integration sits behind one or two egress networks.

What counts: events with `source.ip` whose actor is a provider, keyed per principal within the
account; seller and Amazon actors are ignored (sellers travel and roam between mobile networks;
their access is not delegated). Addresses are folded to networks before counting, /24 for IPv4
and /48 for IPv6 (a site's usual assignment), because offices, NAT pools and DHCP leases hand
one principal many addresses of one network: a principal hopping among hosts of its office /24
counts once (`detectors.networks.network`). An address inside a network the seller allowlisted
for the principal counts as that whole network, however large. The window slides over event
time: the rule fires when the networks seen in the last 60 minutes exceed `ip_churn_per_hour`,
on each event that brings one more new network (events from networks already in the window add
nothing). State per principal: the networks of
the last hour with their last use and the id of that latest event (the alert names one event per
network as evidence), at most twice the threshold (plus two); principals with nothing in the
window are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import responses
from detectors.networks import IPV4_PREFIX, IPV6_PREFIX, network
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "ip_churn"
SEVERITY = "medium"
RESPONSE = (
    "Ask the provider how this principal reaches the account (proxy pool, VPN, several users"
    " sharing one login); many unrelated networks in an hour usually mean a leaked credential.",
    responses.ROTATE,
    "Set an `ip_allowlist` on the provider's grant so only its own networks are accepted.",
)

WINDOW_MS: Final = 3_600_000


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    ip = event.get("source", {}).get("ip")
    if actor["type"] != "provider" or ip is None:
        return []
    net = ctx.declared_network(event) or network(ip)
    if net is None:
        return []
    now = ctx.epoch_ms(event["occurred_at"])
    principals: dict[str, dict[str, int]] = state.setdefault("principals", {})
    _sweep(state, principals, now)
    nets = principals.setdefault(actor["principal_id"], {})
    # The latest event from each network in the window: the alert's evidence.
    ids: dict[str, str] = state.setdefault("ids", {}).setdefault(actor["principal_id"], {})
    for old in [n for n, last in nets.items() if last <= now - WINDOW_MS]:
        del nets[old]
    is_new = net not in nets
    if now >= nets.get(net, now):
        ids[net] = event["event_id"]
    nets[net] = max(nets.get(net, now), now)
    limit = ctx.config.ip_churn_per_hour
    while len(nets) > 2 * limit + 2:
        del nets[min(nets, key=lambda n: (nets[n], n))]
    for gone in [n for n in ids if n not in nets]:
        del ids[gone]
    if not is_new or len(nets) <= limit:
        return []
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{actor['principal_id']}",
            title=f"Provider {actor['provider_id']} principal {actor['principal_id']} hopped across many networks",
            summary=(
                f"Principal {actor['principal_id']} of provider {actor['provider_id']} acted on"
                f" account {event['account_id']} from {len(nets)} distinct networks (/{IPV4_PREFIX}"
                f" IPv4, /{IPV6_PREFIX} IPv6) within an hour, more than the {limit} allowed; the"
                f" latest, {ip}, performed {event['action']}. Networks: {', '.join(sorted(nets))}."
            ),
            response=RESPONSE,
            related=tuple(
                ids[n]
                for n in sorted(nets, key=lambda n: (nets[n], n))
                if n in ids and ids[n] != event["event_id"]
            ),
        )
    ]


def _sweep(state: dict[str, Any], principals: dict[str, dict[str, int]], now: int) -> None:
    """Once an event-time hour, drop principals with no network left in the window."""
    if now < state.get("swept", 0) + WINDOW_MS:
        return
    state["swept"] = now
    ids = state.get("ids", {})
    for principal in [
        p for p, nets in principals.items() if max(nets.values(), default=0) <= now - WINDOW_MS
    ]:
        del principals[principal]
        ids.pop(principal, None)
