"""A provider touching the seller's money without both a funds scope and a live approval.

Moving funds (bank account changes, disbursements, refunds, transfer schedules) is the one thing
a delegated partner should never do on its own say-so: it is how a compromised agency login turns
into stolen payouts. So a provider's `funds.*` action is flagged unless BOTH hold:
- a live grant covering the provider's principal has a scope matching the action (`funds.*`,
  the exact action, or `*`), and
- the event names, in `approval_id`, a live approval that covers this action and resource
  (`pipeline.authorization.live_approval`).

Failed and denied attempts count too: a provider trying to move money without authority is the
signal, whether or not the marketplace let it through. Deliberately ignored: seller and Amazon
actors (the seller owns the money; Amazon's own movements are not delegated access), and which
marketplace the grant covers (the scope detector's business). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.responses import TAKEOVER
from pipeline.alert import Finding
from pipeline.authorization import allows_scope, approval_problem
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "funds_without_approval"
SEVERITY = "critical"
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = ("funds.",)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    action, actor = event["action"], event["actor"]
    if actor["type"] != "provider" or not action.startswith("funds."):
        return []
    live = ctx.covering(event)
    scoped = [g for g in live if allows_scope(g, action)]
    reasons = []
    if not live:
        reasons.append(f"no live grant covers principal {actor['principal_id']}")
    elif not scoped:
        names = ", ".join(sorted(g["grant_id"] for g in live))
        reasons.append(f"live grant(s) {names} have no scope matching {action}")
    problem = approval_problem(ctx.auth, event)
    if problem is not None:
        reasons.append(problem)
    if not reasons:
        return []
    amount = event.get("amount")
    money = f" of {amount['value']} {amount['currency']}" if amount else ""
    outcome = event["outcome"]
    attempt = "" if outcome == "success" else f" ({outcome})"
    provider, principal = actor["provider_id"], actor["principal_id"]
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}|{principal}|{action}",
            title=f"Provider {provider} performed {action} without authorization{attempt}",
            summary=(
                f"Principal {principal} of provider {provider} performed {action}{money} on account"
                f" {event['account_id']} ({event.get('marketplace', 'no marketplace')}, outcome"
                f" {outcome}) at {event['occurred_at']}: {'; '.join(reasons)}. Fund moves by a"
                " provider need a funds scope and a live approval."
            ),
            response=TAKEOVER,
        )
    ]
