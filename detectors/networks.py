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

The lookup runs for most provider events, so it does no `ipaddress` work per event: an
allowlist is compiled once, keyed on its content (the tuple of its entries, so a grant added,
revoked or changed in place reaches a different key, never a stale entry), into one table per
prefix length mapping the network's number to its CIDR string, narrowest first; the event's
address is parsed once per distinct string into (version, integer). A lookup is then one shift
and one dict probe per distinct prefix length in the allowlist. Nothing is added to the stored
state.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from pipeline.authorization import AccountGrants, covering, plain_address
from pipeline.event import Event
from pipeline.memo import MISSING, Memo

if TYPE_CHECKING:
    from detectors import Context

MIN_PREFIX = {4: 16, 6: 32}
#: The prefix `network` folds an address to.
IPV4_PREFIX = 24
IPV6_PREFIX = 48

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


#: `network`'s, `_address_key`'s and `_compiled`'s results (pipeline/memo.py).
_NETWORKS: Final = Memo(65536)
_ADDRESS_KEYS: Final = Memo(65536)
_TABLES: Final = Memo(1024)


def network(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) holding `ip`, as a CIDR string; None if `ip` is no address."""
    found = _NETWORKS.get(ip)
    if found is MISSING:
        found = _NETWORKS.put(ip, _network_of(ip))
    net: str | None = found
    return net


def _network_of(ip: str) -> str | None:
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


#: One compiled allowlist: per IP version, (prefix length, shift, network number -> CIDR) for
#: each distinct prefix length the allowlist uses, narrowest first.
_Tables = dict[int, list[tuple[int, int, dict[int, str]]]]
_BITS = {4: 32, 6: 128}


def _address_key(ip: str) -> tuple[int, int] | None:
    """`plain_address(ip)` as (version, integer); None if `ip` is no address."""
    found = _ADDRESS_KEYS.get(ip)
    if found is MISSING:
        found = _ADDRESS_KEYS.put(ip, _address_key_of(ip))
    key: tuple[int, int] | None = found
    return key


def _address_key_of(ip: str) -> tuple[int, int] | None:
    address = plain_address(ip)
    if address is None:
        return None
    return address.version, int(address)


def _compiled(allowlist: tuple[str, ...]) -> _Tables:
    """The allowlist's declaring networks (see `_network`) as lookup tables (see `_Tables`)."""
    found = _TABLES.get(allowlist)
    if found is MISSING:
        found = _TABLES.put(allowlist, _compile(allowlist))
    tables: _Tables = found
    return tables


def _compile(allowlist: tuple[str, ...]) -> _Tables:
    by_prefix: dict[tuple[int, int], dict[int, str]] = {}
    for cidr in allowlist:
        net = _network(cidr)
        if net is None:
            continue
        shift = _BITS[net.version] - net.prefixlen
        table = by_prefix.setdefault((net.version, net.prefixlen), {})
        table.setdefault(int(net.network_address) >> shift, str(net))
    tables: _Tables = {4: [], 6: []}
    for (version, prefix), table in sorted(by_prefix.items(), key=lambda kv: -kv[0][1]):
        tables[version].append((prefix, _BITS[version] - prefix, table))
    return tables


def declared_network(event: Event, grants: AccountGrants, ctx: Context | None = None) -> str | None:
    """The narrowest allowlisted CIDR, of a live grant covering the event's provider principal,
    that holds the event's source IP; None when there is none (or no IP)."""
    ip = event.get("source", {}).get("ip")
    if ip is None:
        return None
    key = _address_key(ip)
    if key is None:
        return None
    version, value = key
    best: str | None = None
    best_prefix = -1
    for grant in ctx.covering(event) if ctx is not None else covering(grants, event):
        allowlist = grant.get("ip_allowlist")
        if not allowlist:
            continue
        for prefix, shift, table in _compiled(tuple(allowlist))[version]:
            # narrowest first; an equal prefix holding the address is the same network
            if prefix <= best_prefix:
                break
            cidr = table.get(value >> shift)
            if cidr is not None:
                best_prefix, best = prefix, cidr
                break
    return best
