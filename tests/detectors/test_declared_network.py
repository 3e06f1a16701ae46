"""`declared_network` (detectors/networks.py) against a straightforward reference.

The lookup compiles each allowlist once into integer tables, cached by the allowlist's content,
and parses each source address once. The reference below does neither: it parses every address
and every CIDR with `ipaddress` at each call and scans every entry of every covering grant.
Hypothesis drives an account's grants through grants, re-grants under the same id (a new
allowlist), revocations and in-place edits of an allowlist between lookups, so an entry cached
under anything but the allowlist's content would answer from a stale allowlist.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import Context
from detectors.networks import MIN_PREFIX, declared_network
from pipeline.authorization import AccountGrants, apply_grant, covering
from pipeline.config import DetectionConfig
from pipeline.event import Event

PROVIDER = "prov-003"
PRINCIPALS = ("prov-003-user-1", "prov-003-user-2")
AT = "2026-06-01T12:00:00Z"

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def reference(event: Event, grants: AccountGrants) -> str | None:
    """The narrowest declaring network holding the source address, computed from scratch."""
    ip = event.get("source", {}).get("ip")
    if ip is None:
        return None
    try:
        address: _Address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best: _Network | None = None
    for grant in covering(grants, event):
        for cidr in grant.get("ip_allowlist") or ():
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if net.prefixlen < MIN_PREFIX[net.version] or net.version != address.version:
                continue
            if address in net and (best is None or net.prefixlen > best.prefixlen):
                best = net
    return None if best is None else str(best)


# Addresses drawn near a few bases, so that networks overlap and contain them often.
_V4_BASES = ("10.1.0.0", "10.1.2.0", "185.12.40.0", "0.0.0.0")
_V6_BASES = ("2001:db8::", "2001:db8:40::", "fe80::")


@st.composite
def v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    base = int(ipaddress.IPv4Address(draw(st.sampled_from(_V4_BASES))))
    return ipaddress.IPv4Address(
        base + draw(st.integers(0, 1 << draw(st.sampled_from((4, 9, 17)))))
    )


@st.composite
def v6(draw: st.DrawFn) -> ipaddress.IPv6Address:
    base = int(ipaddress.IPv6Address(draw(st.sampled_from(_V6_BASES))))
    spread = draw(st.sampled_from((8, 40, 80, 96)))
    return ipaddress.IPv6Address(base + draw(st.integers(0, (1 << spread) - 1)))


#: Strings that are no address (or no network), some almost.
HOSTILE = st.one_of(
    st.sampled_from(
        (
            "",
            " ",
            "10.1.2",
            "10.1.2.3 ",
            "10.1.2.300",
            "010.1.2.3",
            "10.1.2.3/24",
            "::ffff:10.1.2.3/120",
            "2001:db8::1::2",
            "2001:db8::/129",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "fe80::1%eth0",
            "fe80::%eth0/64",
            "localhost",
            "1e3",
            "\u0661\u0660.\u0661.\u0662.\u0663",  # Arabic-Indic digits
            "10.1.2.3\x00",
        )
    ),
    st.text(max_size=12),
)


@st.composite
def source_ip(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(("v4", "v6", "mapped", "hostile")))
    if kind == "v4":
        return str(draw(v4()))
    if kind == "v6":
        return str(draw(v6()))
    if kind == "mapped":
        return f"::ffff:{draw(v4())}"
    return draw(HOSTILE)


@st.composite
def cidr(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(("v4", "v4", "v6", "v6", "host", "mapped", "hostile")))
    if kind == "v4":
        return f"{draw(v4())}/{draw(st.integers(0, 32))}"  # non-strict: host bits set
    if kind == "v6":
        return f"{draw(v6())}/{draw(st.integers(0, 128))}"
    if kind == "host":
        return str(draw(st.one_of(v4(), v6())))
    if kind == "mapped":
        return f"::ffff:{draw(v4())}/{draw(st.integers(96, 128))}"
    return draw(HOSTILE)


ALLOWLIST = st.one_of(st.none(), st.lists(cidr(), max_size=6))

# One step of the account's history: a grant (new or under an id already used), a revocation,
# an allowlist edited in place, or a lookup.
STEP = st.one_of(
    st.tuples(
        st.just("grant"),
        st.sampled_from(("g-1", "g-2", "g-3")),
        ALLOWLIST,
        st.one_of(st.none(), st.lists(st.sampled_from(PRINCIPALS), max_size=2)),
        st.sampled_from((None, "2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z")),
    ),
    st.tuples(st.just("revoke"), st.sampled_from(("g-1", "g-2", "g-3"))),
    st.tuples(st.just("edit"), st.sampled_from(("g-1", "g-2", "g-3")), cidr(), st.booleans()),
    st.tuples(st.just("lookup"), st.one_of(st.none(), source_ip()), st.sampled_from(PRINCIPALS)),
)


def _control(action: str, n: int, grant: dict[str, Any]) -> Event:
    return {
        "event_id": f"e-{n}",
        "occurred_at": AT,
        "action": action,
        "outcome": "success",
        "actor": {"type": "seller", "principal_id": "owner"},
        "grant": grant,
    }


def _lookup(n: int, ip: str | None, principal: str) -> Event:
    event: Event = {
        "event_id": f"e-{n}",
        "occurred_at": AT,
        "action": "listing.update",
        "outcome": "success",
        "actor": {"type": "provider", "provider_id": PROVIDER, "principal_id": principal},
    }
    if ip is not None:
        event["source"] = {"ip": ip}
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=14))
def test_lookup_matches_reference_through_grant_changes(steps: list[tuple[Any, ...]]) -> None:
    grants: AccountGrants = {}
    config = DetectionConfig()
    for n, step in enumerate(steps):
        if step[0] == "grant":
            _, grant_id, allowlist, principals, valid_until = step
            grant: dict[str, Any] = {"grant_id": grant_id, "provider_id": PROVIDER}
            if allowlist is not None:
                grant["ip_allowlist"] = allowlist
            if principals is not None:
                grant["principals"] = principals
            if valid_until is not None:
                grant["valid_until"] = valid_until
            apply_grant(grants, _control("permission.grant", n, grant))
        elif step[0] == "revoke":
            apply_grant(grants, _control("permission.revoke", n, {"grant_id": step[1]}))
        elif step[0] == "edit":
            _, grant_id, entry, append = step
            held = grants.get(grant_id, {}).get("ip_allowlist")
            if held is not None:  # the stored JSON changed in place, not replaced
                if append or not held:
                    held.append(entry)
                else:
                    held.pop()
        else:
            event = _lookup(n, step[1], step[2])
            expected = reference(event, grants)
            assert declared_network(event, grants) == expected
            ctx = Context({"grants": grants}, config)
            assert ctx.declared_network(event) == expected
            assert ctx.declared_network(event) == expected  # the per-event memo


@settings(max_examples=300, deadline=None)
@given(st.lists(cidr(), min_size=1, max_size=8), st.lists(cidr(), max_size=8), source_ip())
def test_overlapping_grants_narrowest_wins(first: list[str], second: list[str], ip: str) -> None:
    """Two live grants with overlapping allowlists, in either order: the narrowest network."""
    for order in ((first, second), (second, first)):
        grants: AccountGrants = {}
        for n, allowlist in enumerate(order):
            apply_grant(
                grants,
                _control(
                    "permission.grant",
                    n,
                    {"grant_id": f"g-{n}", "provider_id": PROVIDER, "ip_allowlist": allowlist},
                ),
            )
        event = _lookup(9, ip, PRINCIPALS[0])
        assert declared_network(event, grants) == reference(event, grants)


def test_known_answers() -> None:
    """A few hand-checked cases, so the reference itself is pinned."""
    allowlist = [
        "10.1.2.3/16",  # non-strict: 10.1.0.0/16
        "10.1.2.0/24",
        "10.1.2.7",  # a host
        "10.0.0.0/8",  # too wide to declare
        "2001:db8:40::/48",
        "not a network",
    ]
    grants: AccountGrants = {}
    apply_grant(
        grants,
        _control(
            "permission.grant",
            0,
            {"grant_id": "g-1", "provider_id": PROVIDER, "ip_allowlist": allowlist},
        ),
    )
    cases = {
        "10.1.2.7": "10.1.2.7/32",
        "::ffff:10.1.2.7": "10.1.2.7/32",
        "10.1.2.8": "10.1.2.0/24",
        "10.1.9.9": "10.1.0.0/16",
        "10.2.0.1": None,
        "2001:db8:40::5": "2001:db8:40::/48",
        "2001:db8:41::5": None,
        "10.1.2.7/32": None,
        "": None,
    }
    for ip, expected in cases.items():
        event = _lookup(1, ip, PRINCIPALS[0])
        assert reference(event, grants) == expected, ip
        assert declared_network(event, grants) == expected, ip
    apply_grant(grants, _control("permission.revoke", 2, {"grant_id": "g-1"}))
    assert declared_network(_lookup(3, "10.1.2.7", PRINCIPALS[0]), grants) is None
