"""A provider performing an action its grant reserves for approval, without a live approval.

Sellers delegate day-to-day work but keep a hand on the irreversible steps: a grant's
`require_approval` lists action patterns (typically `listing.delete`) that need an `approval_id`
naming a live `approval.grant` for that action (and resource, if the approval names one). An
unapproved reserved action is a partner ignoring the agreed process or someone else using its
access.

The requirement holds when a live covering grant of the provider requires approval for the
action and no other live covering grant allows it outright (scope and site, no approval
required): grants only ever widen access. All outcomes count: a denied attempt still skipped the
approval. The summary says why a named approval did not count (unknown, other action or
resource, expired, not yet granted). Deliberately ignored: sellers and Amazon, and providers with
no covering grant (the scope and no-grant rules report those). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.grants import allows
from pipeline.alert import Finding
from pipeline.authorization import Grant, approval_problem, live_approval
from pipeline.contract import action_matches
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "approval_missing"
SEVERITY = "high"


def _requires_approval(grant: Grant, action: str) -> bool:
    return any(action_matches(p, action) for p in grant.get("require_approval", ()))


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor, action = event["actor"], event["action"]
    if actor["type"] != "provider":
        return []
    live = ctx.covering(event)
    requiring = [g for g in live if _requires_approval(g, action)]
    if not requiring:
        return []
    if any(allows(g, event) for g in live if not _requires_approval(g, action)):
        return []
    if live_approval(ctx.auth, event) is not None:
        return []
    provider, principal = actor["provider_id"], actor["principal_id"]
    grants = ", ".join(sorted(g["grant_id"] for g in requiring))
    target = event.get("resource", {}).get("id", "the account")
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{principal}|{action}",
            title=f"Provider {provider} performed {action} without the required approval",
            summary=(
                f"Principal {principal} of provider {provider} performed {action} on {target} on"
                f" account {event['account_id']} (outcome {event['outcome']}) at"
                f" {event['occurred_at']}; grant(s) {grants} require an approval for it, and"
                f" {approval_problem(ctx.auth, event)}."
            ),
            response=responses.ABUSE,
        )
    ]
