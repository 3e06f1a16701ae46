"""A provider principal acting on an account where no live grant of its provider covers it.

Never granted, revoked, expired, or a principal the grants do not name: leaked agency keys and
ex-partners who kept a login show up this way, often first as a login or a report download.
Every outcome counts. Deliberately left to other rules: `listing.*`, `inventory.*` and `ads.*`
(listing_out_of_scope explains those), `funds.*` (the fund rules), and the sensitive actions
(provider_sensitive_action: already critical, one alert per event is enough). Whether a covered
principal's action is inside its grant's scopes is not judged here. Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.grants import CATALOGUE_PREFIXES, SENSITIVE_ACTIONS, why_not_covered
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "provider_without_grant"
SEVERITY = "high"
RESPONSE = (responses.REVOKE, responses.ROTATE, responses.CONFIRM, responses.PRESERVE)
#: Actions other rules judge when no grant covers them: the catalogue (listing_out_of_scope) and
#: funds (funds_without_approval), as prefixes.
ELSEWHERE = (*CATALOGUE_PREFIXES, "funds.")


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor, action = event["actor"], event["action"]
    if (
        actor["type"] != "provider"
        or action in SENSITIVE_ACTIONS
        or action.startswith(ELSEWHERE)
        or ctx.covering(event)
    ):
        return []
    provider, principal = actor["provider_id"], actor["principal_id"]
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{provider}|{principal}",
            title=f"Provider {provider} acted on the account with no live grant",
            summary=(
                f"Principal {principal} of provider {provider} performed {action} on account"
                f" {event['account_id']} (outcome {event['outcome']}) at {event['occurred_at']}:"
                f" {why_not_covered(ctx.auth['grants'], event)}."
            ),
            response=RESPONSE,
        )
    ]
