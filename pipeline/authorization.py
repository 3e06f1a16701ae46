"""An account's authorization state: grants, approvals and policy, folded from the log itself.

`permission.grant` / `permission.revoke` change grants (see `pipeline.grants`), `approval.grant`
records an approval that later actions may name in `approval_id`, `policy.update` merges account
settings (rate limit, tax filing cadence). Only the seller (or Amazon) holds that authority.
Replaying the ledger in `seq` order rebuilds exactly
the state every decision saw. The state is plain JSON so it can live in a Faust table.
"""

from __future__ import annotations

from typing import Any

from pipeline import grants as grant_rules
from pipeline.contract import action_matches
from pipeline.event import Event

AUTHORIZATION_ACTIONS = frozenset({"permission.grant", "permission.revoke", "approval.grant", "policy.update"})


def empty() -> dict[str, Any]:
    return {"grants": {}, "approvals": {}, "policy": {}}


def apply(state: dict[str, Any], event: Event) -> bool:
    """Fold an authorization event into `state` (in place); True when it changed."""
    action = event["action"]
    if event["outcome"] != "success" or event["actor"]["type"] == "provider":
        # A provider cannot widen its own access: its grants, approvals and policy changes are
        # not authority (detectors/sensitive_actions.py raises on them instead).
        return False
    if action in ("permission.grant", "permission.revoke"):
        return grant_rules.apply(state["grants"], event)
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
