"""A provider editing listings, inventory or ads where none of its live grants allows it.

Permission abuse is the most common way a co-operation partnership fails: an agency hired for the
DE and FR sites "helps out" on JP, keeps editing after the seller revoked it, lets a colleague the
grant never named use the login, or keeps going past the grant's end date. Each of those writes
is an unauthorized change to what buyers see, so the rule is strict: a `listing.*`,
`inventory.*` or `ads.*` action by a provider fires unless at least one live grant of that
provider covers the principal (`principals`), includes the action in `scopes` and the site in
`marketplaces` (a grant without `marketplaces` allows every site). The summary names the reason
(no grant, principal not covered, revoked, expired, action or site outside the grant).

All outcomes count: a `denied` or `failed` write was stopped by the marketplace, but the attempt
itself shows a partner probing beyond its delegation, and the seller wants to know either way.
Deliberately ignored: sellers and Amazon (their own account, not delegated access), and every
other action family; fund moves, logins, reports and filings belong to other rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.authorization import AccountGrants, Grant, allows_scope
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "listing_out_of_scope"
PREFIXES = ("listing.", "inventory.", "ads.")


def allows_site(grant: Grant, marketplace: str | None) -> bool:
    """The grant's `marketplaces` include the site (no list: every site)."""
    sites = grant.get("marketplaces")
    return sites is None or marketplace in sites


def allows(grant: Grant, event: Event) -> bool:
    """The grant lets its holder perform this action on this site."""
    return allows_scope(grant, event["action"]) and allows_site(grant, event.get("marketplace"))


def why_not_covered(grants: AccountGrants, event: Event) -> str:
    """Why no live grant covers the event's provider principal (call when `covering` is empty)."""
    actor = event["actor"]
    provider, principal = actor["provider_id"], actor["principal_id"]
    own = sorted(
        (g for g in grants.values() if g.get("provider_id") == provider),
        key=lambda g: g["grant_id"],
    )
    if not own:
        return f"provider {provider} holds no grant on this account"
    reasons = []
    for g in own:
        principals = g.get("principals")
        if principals is not None and principal not in principals:
            reasons.append(f"grant {g['grant_id']} does not cover principal {principal}")
        elif "revoked_at" in g:
            reasons.append(f"grant {g['grant_id']} was revoked at {g['revoked_at']}")
        else:
            reasons.append(f"grant {g['grant_id']} expired at {g['valid_until']}")
    return "; ".join(reasons)


def why_out_of_scope(live: list[Grant], event: Event) -> str:
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


def decide(event: Event, grants: AccountGrants, ctx: Context) -> Finding | None:
    actor = event["actor"]
    if actor["type"] != "provider" or not event["action"].startswith(PREFIXES):
        return None
    live = ctx.covering(event)
    if any(allows(g, event) for g in live):
        return None
    reason = why_out_of_scope(live, event) if live else why_not_covered(grants, event)
    provider, principal = actor["provider_id"], actor["principal_id"]
    target = event.get("resource", {}).get("id", "the account")
    return Finding(
        detector=DETECTOR,
        severity=ctx.config.severity(DETECTOR, "high"),
        key=f"{event['account_id']}|{provider}|{principal}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {provider} performed {event['action']} outside its grants",
        summary=(
            f"Principal {principal} of provider {provider} performed {event['action']} on {target}"
            f" in {event.get('marketplace')} on account {event['account_id']}"
            f" (outcome {event['outcome']}) at {event['occurred_at']}: {reason}."
        ),
        response=responses.ABUSE,
    )


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    finding = decide(event, ctx.auth["grants"], ctx)
    return [finding] if finding is not None else []
