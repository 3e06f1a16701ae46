"""An account's authorization state: grants, approvals and policy, folded from the log itself.

`permission.grant` / `permission.revoke` change grants (`apply_grant` below), `approval.grant`
records an approval that later actions may name in `approval_id`, `policy.update` merges account
settings (rate limit, tax filing cadence). Only the seller (or Amazon) holds that authority.
Replaying the ledger in `seq` order rebuilds exactly
the state every decision saw. The state is plain JSON so it can live in a Faust table.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from pipeline.contract import action_matches
from pipeline.event import Event

# --- grants: `grant_id -> grant`, folded from permission.grant / permission.revoke ---

Grant = dict[str, Any]
AccountGrants = dict[str, Grant]


def apply_grant(grants: AccountGrants, event: Event) -> bool:
    """Fold a grant event into the account's grants; return True when the state changed."""
    action = event["action"]
    if action == "permission.grant" and event["outcome"] == "success":
        grant = dict(event["grant"])
        grant["granted_at"] = event["occurred_at"]
        grant["granted_by_event"] = event["event_id"]
        grants[grant["grant_id"]] = grant
        return True
    if action == "permission.revoke" and event["outcome"] == "success":
        current = grants.get(event["grant"]["grant_id"])
        if current is not None and "revoked_at" not in current:
            revoked = dict(current)  # never mutate a value a table may still hold
            revoked["revoked_at"] = event["occurred_at"]
            revoked["revoked_by_event"] = event["event_id"]
            grants[revoked["grant_id"]] = revoked
            return True
    return False


def is_live(grant: Grant, at: str) -> bool:
    """Not revoked and not expired at `at` (both UTC strings of the same format)."""
    if "revoked_at" in grant:
        return False
    valid_until = grant.get("valid_until")
    return valid_until is None or at < valid_until


def covers_actor(grant: Grant, provider_id: str, principal_id: str) -> bool:
    """The grant was given to this provider and covers this principal."""
    if grant.get("provider_id") != provider_id:
        return False
    principals = grant.get("principals")
    return principals is None or principal_id in principals


def covering(grants: AccountGrants, event: Event) -> list[Grant]:
    """Live grants that cover the event's provider principal (empty for non-provider actors)."""
    actor = event["actor"]
    if actor["type"] != "provider":
        return []
    return [
        g
        for g in grants.values()
        if covers_actor(g, actor["provider_id"], actor["principal_id"])
        and is_live(g, event["occurred_at"])
    ]


def allows_scope(grant: Grant, action: str) -> bool:
    return any(action_matches(p, action) for p in grant.get("scopes", ()))


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


@lru_cache(maxsize=65536)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


@lru_cache(maxsize=65536)
def plain_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`ip` parsed, an IPv4-mapped IPv6 address as the IPv4 it maps; None if it is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def allows_ip(grant: Grant, ip: str) -> bool:
    """The grant's `ip_allowlist` admits `ip` (no allowlist: anywhere)."""
    allowlist = grant.get("ip_allowlist")
    if allowlist is None:
        return True
    return _allowlist_admits(tuple(allowlist), ip)


@lru_cache(maxsize=65536)
def _allowlist_admits(allowlist: tuple[str, ...], ip: str) -> bool:
    """Cached: an account's few allowlists meet the same source addresses over and over."""
    address = _address(ip)
    for cidr in allowlist:
        net = _network(cidr)
        if address.version == net.version and address in net:
            return True
        # An IPv4-mapped IPv6 source matches the IPv4 allowlist entry it maps to.
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None and net.version == 4 and mapped in net:
            return True
    return False


# --- the account's whole authorization state ---

AUTHORIZATION_ACTIONS = frozenset(
    {"permission.grant", "permission.revoke", "approval.grant", "policy.update"}
)


def empty() -> dict[str, Any]:
    return {"grants": {}, "approvals": {}, "policy": {}}


def apply(state: dict[str, Any], event: Event) -> bool:
    """Fold an authorization event into `state` (in place); True when it changed."""
    action = event["action"]
    if event["outcome"] != "success" or event["actor"]["type"] == "provider":
        # A provider cannot widen its own access: its grants, approvals and policy changes are
        # not authority (detectors/rules/provider_sensitive_action.py raises on them instead).
        return False
    if action in ("permission.grant", "permission.revoke"):
        return apply_grant(state["grants"], event)
    if action == "approval.grant":
        approval = dict(event["approval"])
        approval["granted_at"] = event["occurred_at"]
        approval["granted_by_event"] = event["event_id"]
        state["approvals"][approval["approval_id"]] = approval
        return True
    if action == "policy.update":
        state["policy"] = {**state["policy"], **event["policy"]}
        return True
    return False


def approval_problem(state: dict[str, Any], event: Event) -> str | None:
    """Why the approval the event names does not authorize it, or None when it does.

    An approval authorizes an event when it exists, covers the event's action (a pattern such
    as `listing.*`) and resource (when it names one), and is live at the event's time.
    """
    approval_id = event.get("approval_id")
    if approval_id is None:
        return "the event names no approval_id"
    approval = state["approvals"].get(approval_id)
    if approval is None:
        return f"approval {approval_id} was never granted"
    if not action_matches(approval["action"], event["action"]):
        return f"approval {approval_id} is for {approval['action']}, not {event['action']}"
    resource_id = approval.get("resource_id")
    if resource_id is not None and resource_id != event.get("resource", {}).get("id"):
        return f"approval {approval_id} is for resource {resource_id}, not this one"
    if event["occurred_at"] < approval["granted_at"]:
        return f"approval {approval_id} was only granted at {approval['granted_at']}"
    if event["occurred_at"] >= approval["expires_at"]:
        return f"approval {approval_id} expired at {approval['expires_at']}"
    return None


def live_approval(state: dict[str, Any], event: Event) -> dict[str, Any] | None:
    """The approval the event names, if it authorizes the event (see `approval_problem`)."""
    if approval_problem(state, event) is not None:
        return None
    approval: dict[str, Any] = state["approvals"][event["approval_id"]]
    return approval
