"""Providers touching the account itself, and provider principals acting with no live grant.

`provider_sensitive_action` (critical): no co-operation partner needs to hand out permissions,
create credentials, change MFA, or change the account's legal entity or contact details. These
are the steps of an account takeover (new credentials and a new contact address come before the
bank account changes), so a provider doing any of them fires whatever its grants say, and
whatever the outcome: a denied attempt is as telling as a successful one.

`provider_without_grant` (high): a provider principal acting on an account where no live grant
of its provider covers it: never granted, revoked, expired, or a principal the grants do not
name. Leaked agency keys and ex-partners who kept a login show up this way, often first as a
login or a report download. Deliberately left to other rules: `listing.*`, `inventory.*` and
`ads.*` (listing_out_of_scope explains those), `funds.*` (the fund rules), and the sensitive
actions above (already critical, one alert per event is enough). Whether a covered principal's
action is inside its grant's scopes is not judged here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.rules.listing_out_of_scope import PREFIXES as LISTING_PREFIXES
from detectors.rules.listing_out_of_scope import why_not_covered
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.authorization import AccountGrants
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

SENSITIVE = "provider_sensitive_action"
WITHOUT_GRANT = "provider_without_grant"
SENSITIVE_ACTIONS = frozenset(
    {
        "permission.grant",
        "auth.credentials_create",
        "auth.mfa_change",
        "account.legal_info_change",
        "account.contact_change",
    }
)
SENSITIVE_RESPONSE = (responses.REVOKE, responses.ROTATE, responses.CASE, responses.PRESERVE)
NO_GRANT_RESPONSE = (responses.REVOKE, responses.ROTATE, responses.CONFIRM, responses.PRESERVE)


def sensitive(event: Event, ctx: Context) -> Finding | None:
    actor = event["actor"]
    action = event["action"]
    if actor["type"] != "provider" or action not in SENSITIVE_ACTIONS:
        return None
    provider, principal = actor["provider_id"], actor["principal_id"]
    return Finding(
        detector=SENSITIVE,
        severity=ctx.config.severity(SENSITIVE, "critical"),
        key=f"{event['account_id']}|{principal}|{action}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {provider} performed {action} on the seller's account",
        summary=(
            f"Principal {principal} of provider {provider} performed {action} on account"
            f" {event['account_id']} (outcome {event['outcome']}) at {event['occurred_at']};"
            " no co-operation partner should manage permissions, credentials, MFA or the"
            " account's legal and contact details."
        ),
        response=SENSITIVE_RESPONSE,
    )


def without_grant(event: Event, grants: AccountGrants, ctx: Context) -> Finding | None:
    actor = event["actor"]
    action = event["action"]
    if (
        actor["type"] != "provider"
        or action in SENSITIVE_ACTIONS
        or action.startswith((*LISTING_PREFIXES, "funds."))
        or ctx.covering(event)
    ):
        return None
    provider, principal = actor["provider_id"], actor["principal_id"]
    return Finding(
        detector=WITHOUT_GRANT,
        severity=ctx.config.severity(WITHOUT_GRANT, "high"),
        key=f"{event['account_id']}|{provider}|{principal}",
        window=bucket(event["occurred_at"], ctx.config.suppression_minutes),
        title=f"Provider {provider} acted on the account with no live grant",
        summary=(
            f"Principal {principal} of provider {provider} performed {action} on account"
            f" {event['account_id']} (outcome {event['outcome']}) at {event['occurred_at']}:"
            f" {why_not_covered(grants, event)}."
        ),
        response=NO_GRANT_RESPONSE,
    )


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    found = (sensitive(event, ctx), without_grant(event, ctx.auth["grants"], ctx))
    return [f for f in found if f is not None]
