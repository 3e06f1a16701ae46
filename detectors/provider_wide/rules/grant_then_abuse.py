"""A provider's access widened, then used heavily within minutes; or a grant by an unexpected approver.

Why: an attacker inside the seller's account (a hijacked staff login) or a partner who talked
someone into it widens a provider's grant (a scope, a marketplace, a principal) and uses exactly
the new access at once, before anyone reviews the change. Either step alone is routine: grants
change, and partners use what they are given. Heavy use of just-granted access, within minutes,
is the pattern; so is a grant issued by someone who never managed the account's access before.

What counts:
- widening: a successful `permission.grant` by the seller (or Amazon) that gives a provider that
  already held a grant on the account a scope its earlier grants did not cover, a marketplace
  they did not list, or a principal they did not name (a first grant is onboarding, not
  widening). Provider events that use the added access (the action needs an added scope, or the
  site is an added one, or the principal an added one), any outcome, are counted for
  `grant_abuse_window_minutes` after the grant; at `grant_abuse_min_uses` the rule fires, and
  every further use in the window folds into the alert (window: the grant).
- unexpected approver: a grant that adds access (widening, or a first grant) issued by a seller
  principal who never issued an authorization event on the account (grant, revoke, approval,
  policy), once known approvers issued at least `approver_min_history` of them (the learned
  baseline; an account without that history has no "unexpected"). The approvers of each account
  are counted by the provider stage in the account's authorization (`ctx.auth["approvers"]`,
  detectors/provider_wide/run.py), after the rules saw the event.

A provider-wide rule (keyed by provider, per account inside it), so it runs in the provider
stage, off the ingest path: grants reach it through the provider they name. The evidence names
the grant first, then the uses of the new access, up to `RECENT`. State per provider and account:
the last version of each of its grants (what access it gave) and the open widening (dropped
after the window).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from pipeline.alert import Finding
from pipeline.contract import action_matches
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "grant_then_abuse"
SEVERITY = "high"
RECENT = 20
EVERY_SITE = "*"
RESPONSE = (
    "Review the grant change with whoever issued it (the evidence names the grant event) and undo"
    " it if nobody at the seller asked for it; check what the provider did with the new access.",
    *responses.ABUSE,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    action, actor = event["action"], event["actor"]
    if action in ("permission.grant", "permission.revoke"):
        if event["outcome"] != "success" or actor["type"] == "provider":
            return []  # a provider's own grant is no authority (provider_sensitive_action)
        return _grant(event, state, ctx)
    if actor["type"] != "provider" or event["account_id"] not in state.get("open", {}):
        return []
    return _use(event, state, ctx)


def _access(grant: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": grant.get("provider_id"),
        "scopes": list(grant.get("scopes", [])),
        "sites": None if grant.get("marketplaces") is None else list(grant["marketplaces"]),
        "principals": None if grant.get("principals") is None else list(grant["principals"]),
    }


def _covered(scope: str, patterns: list[str]) -> bool:
    """Everything `scope` (an action or a pattern such as `listing.*`) allows, one of `patterns`
    allowed already."""
    probe = scope[:-1] + "x" if scope.endswith("*") else scope  # any action under the pattern
    return any(action_matches(p, probe) and (p == "*" or scope != "*") for p in patterns)


def _added(before: list[dict[str, Any]], new: dict[str, Any]) -> dict[str, list[str]]:
    """What `new` gives that none of `before` (the provider's earlier grants) did."""
    old_scopes = [o for b in before for o in b["scopes"]]
    scopes = [s for s in new["scopes"] if not _covered(s, old_scopes)]
    old_sites = {s for b in before for s in (b["sites"] or [EVERY_SITE])}
    sites = (
        []
        if EVERY_SITE in old_sites
        else [EVERY_SITE]
        if new["sites"] is None
        else [s for s in new["sites"] if s not in old_sites]
    )
    old_principals = {p for b in before for p in (b["principals"] or [EVERY_SITE])}
    principals = (
        []
        if EVERY_SITE in old_principals
        else [EVERY_SITE]
        if new["principals"] is None
        else [p for p in new["principals"] if p not in old_principals]
    )
    return {
        k: v for k, v in (("scopes", scopes), ("sites", sites), ("principals", principals)) if v
    }


def _grant(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    account, grant_id = event["account_id"], event["grant"]["grant_id"]
    provider = event["grant"].get("provider_id")
    versions: dict[str, Any] = state.setdefault("v", {}).setdefault(account, {})
    for gid, grant in ctx.auth["grants"].items():  # the provider's grants older than this state
        if (
            gid != grant_id
            and gid not in versions
            and grant.get("provider_id") == provider
            and "revoked_at" not in grant
        ):
            versions[gid] = _access(grant)
    if event["action"] == "permission.revoke":
        versions.pop(grant_id, None)
        return []
    new = _access(event["grant"])
    before = list(versions.values())
    added = _added(before, new) if before else {"first grant": [grant_id]}
    versions[grant_id] = new
    if before and added:
        state.setdefault("open", {})[account] = {
            "at": ctx.epoch_ms(event["occurred_at"]),
            "ts": event["occurred_at"],
            "id": event["event_id"],
            "added": added,
            "uses": [],
            "n": 0,
        }
    approvers: dict[str, int] = ctx.auth.get("approvers", {})
    unknown = event["actor"]["principal_id"] not in approvers
    if added and unknown and sum(approvers.values()) >= ctx.config.approver_min_history:
        return [_unexpected(event, added, approvers, ctx)]
    return []


def _uses_added(event: Event, added: dict[str, list[str]]) -> bool:
    actor = event["actor"]
    if any(action_matches(s, event["action"]) for s in added.get("scopes", ())):
        return True
    sites = added.get("sites", ())
    if event.get("marketplace") is not None and (
        EVERY_SITE in sites or event.get("marketplace") in sites
    ):
        return True
    principals = added.get("principals", ())
    return EVERY_SITE in principals or actor["principal_id"] in principals


def _use(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    provider = event["actor"]["provider_id"]
    opened = state["open"]
    widening = opened[event["account_id"]]
    now = ctx.epoch_ms(event["occurred_at"])
    window_ms = ctx.config.grant_abuse_window_minutes * 60_000
    if now - widening["at"] > window_ms:
        del opened[event["account_id"]]
        if not opened:
            del state["open"]
        return []
    if now < widening["at"] or not _uses_added(event, widening["added"]):
        return []
    widening["n"] += 1
    widening["uses"] = [*widening["uses"], event["event_id"]][-RECENT:]
    if widening["n"] < ctx.config.grant_abuse_min_uses:
        return []
    minutes = (now - widening["at"]) / 60_000
    what = "; ".join(f"{k} {', '.join(v)}" for k, v in widening["added"].items())
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}|{widening['id']}",
            window=widening["ts"],
            title=f"Provider {provider} used newly granted access {widening['n']} times within {minutes:.0f} minutes",
            summary=(
                f"A grant at {widening['ts']} (event {widening['id']}) widened provider {provider}'s"
                f" access on account {event['account_id']} ({what}); within {minutes:.0f} minutes it"
                f" used exactly that access {widening['n']} times (latest {event['action']} by"
                f" {event['actor']['principal_id']}, event {event['event_id']}), at least the"
                f" {ctx.config.grant_abuse_min_uses} that make it heavy."
            ),
            response=RESPONSE,
            related=(widening["id"], *(u for u in widening["uses"] if u != event["event_id"]))[
                :RECENT
            ],
        )
    ]


def _unexpected(
    event: Event, added: dict[str, list[str]], approvers: dict[str, int], ctx: Context
) -> Finding:
    actor, grant = event["actor"], event["grant"]
    known = ", ".join(sorted(approvers, key=lambda a: -approvers[a])[:5])
    what = "; ".join(f"{k} {', '.join(v)}" for k, v in added.items())
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{grant['grant_id']}|approver",
        title=f"Grant to provider {grant.get('provider_id')} by {actor['principal_id']}, who never managed access here",
        summary=(
            f"{actor['type'].capitalize()} {actor['principal_id']} issued grant {grant['grant_id']}"
            f" to provider {grant.get('provider_id')} on account {event['account_id']} at"
            f" {event['occurred_at']} (event {event['event_id']}: {what}); the account's access has"
            f" been managed by {known} ({sum(approvers.values())} earlier authorization events)."
        ),
        response=RESPONSE,
    )
