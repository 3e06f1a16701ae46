"""Networks of source addresses: the one a site usually holds, and the provider's own.

`network(ip)` folds an address to the /24 (IPv4) or /48 (IPv6) a site is usually assigned, so
offices, NAT pools and DHCP leases count once (ip_churn, the behaviour features).

`declared_network`: the provider's own networks, as the seller declared them in a grant's
`ip_allowlist`.

An address inside a CIDR the seller allowlisted for a principal is, by the seller's word, the
provider's office or egress, whatever a geoip database says about that range (hosting and office
/24s are sometimes split between countries or operators). The IP and geography rules use this
to stay quiet on such addresses. Only entries narrow enough to name one organisation's network
count: at least /16 for IPv4 and /32 for IPv6; `0.0.0.0/0` and the like declare nothing.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING

from pipeline.authorization import AccountGrants, covering, plain_address
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

MIN_PREFIX = {4: 16, 6: 32}
#: The prefix `network` folds an address to.
IPV4_PREFIX = 24
IPV6_PREFIX = 48

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def network(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) holding `ip`, as a CIDR string; None if `ip` is no address."""
    address = plain_address(ip)
    if address is None:
        return None
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@lru_cache(maxsize=4096)
def _network(cidr: str) -> _Network | None:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    return net if net.prefixlen >= MIN_PREFIX[net.version] else None


def declared_network(event: Event, grants: AccountGrants, ctx: Context | None = None) -> str | None:
    """The narrowest allowlisted CIDR, of a live grant covering the event's provider principal,
    that holds the event's source IP; None when there is none (or no IP)."""
    ip = event.get("source", {}).get("ip")
    if ip is None:
        return None
    address = plain_address(ip)
    if address is None:
        return None
    best: _Network | None = None
    for grant in ctx.covering(event) if ctx is not None else covering(grants, event):
        for cidr in grant.get("ip_allowlist") or ():
            net = _network(cidr)
            if (
                net is not None
                and net.version == address.version
                and address in net
                and (best is None or net.prefixlen > best.prefixlen)
            ):
                best = net
    return str(best) if best is not None else None
