"""A provider editing listings, inventory or ads where none of its live grants allows it.

Permission abuse is the most common way a co-operation partnership fails: an agency hired for the
DE and FR sites "helps out" on JP, keeps editing after the seller revoked it, lets a colleague the
grant never named use the login, or keeps going past the grant's end date. Each such write is an
unauthorized change to what buyers see, so the rule is strict: a `listing.*`, `inventory.*` or
`ads.*` action by a provider fires unless a live grant of that provider covers the principal
(`principals`), includes the action in `scopes` and the site in `marketplaces` (none: every
site). The summary names the reason (no grant, principal not covered, revoked, expired, action
or site outside the grant).

All outcomes count: a `denied` or `failed` write shows a partner probing beyond its delegation.
Deliberately ignored: sellers and Amazon (their own account), and every other action family
(fund moves, logins, reports and filings belong to other rules). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.grants import CATALOGUE_PREFIXES, allows, why_not_covered
from pipeline.alert import Finding
from pipeline.authorization import Grant, allows_scope
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "listing_out_of_scope"
SEVERITY = "high"
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = CATALOGUE_PREFIXES


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if actor["type"] != "provider" or not event["action"].startswith(CATALOGUE_PREFIXES):
        return []
    live = ctx.covering(event)
    if any(allows(g, event) for g in live):
        return []
    reason = _out_of_scope(live, event) if live else why_not_covered(ctx.auth["grants"], event)
    provider, principal = actor["provider_id"], actor["principal_id"]
    target = event.get("resource", {}).get("id", "the account")
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}|{principal}",
            title=f"Provider {provider} performed {event['action']} outside its grants",
            summary=(
                f"Principal {principal} of provider {provider} performed {event['action']} on"
                f" {target} in {event.get('marketplace')} on account {event['account_id']}"
                f" (outcome {event['outcome']}) at {event['occurred_at']}: {reason}."
            ),
            response=responses.ABUSE,
        )
    ]


def _out_of_scope(live: list[Grant], event: Event) -> str:
    action, site = event["action"], event.get("marketplace")
    reasons = []
    for g in sorted(live, key=lambda g: g["grant_id"]):
        if not allows_scope(g, action):
            scopes = ", ".join(g.get("scopes", ())) or "none"
            reasons.append(f"grant {g['grant_id']} does not allow {action} (scopes: {scopes})")
        else:
            reasons.append(
                f"grant {g['grant_id']} does not allow marketplace {site}"
                f" (marketplaces: {', '.join(g['marketplaces']) or 'none'})"
            )
    return "; ".join(reasons)
