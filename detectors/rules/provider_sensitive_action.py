"""A provider touching the account itself: permissions, credentials, MFA, legal or contact data.

No co-operation partner needs to hand out permissions, create credentials, change MFA, or change
the account's legal entity or contact details (`grants.SENSITIVE_ACTIONS`). These are the steps
of an account takeover (new credentials and a new contact address come before the bank account
changes), so a provider doing any of them fires whatever its grants say, and whatever the
outcome: a denied attempt is as telling as a successful one. Deliberately ignored: sellers and
Amazon (their own account). Stateless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.grants import SENSITIVE_ACTIONS
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "provider_sensitive_action"
SEVERITY = "critical"
RESPONSE = (responses.REVOKE, responses.ROTATE, responses.CASE, responses.PRESERVE)
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = tuple(sorted(SENSITIVE_ACTIONS))


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor, action = event["actor"], event["action"]
    if actor["type"] != "provider" or action not in SENSITIVE_ACTIONS:
        return []
    provider, principal = actor["provider_id"], actor["principal_id"]
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=f"{event['account_id']}|{principal}|{action}",
            title=f"Provider {provider} performed {action} on the seller's account",
            summary=(
                f"Principal {principal} of provider {provider} performed {action} on account"
                f" {event['account_id']} (outcome {event['outcome']}) at {event['occurred_at']};"
                " no co-operation partner should manage permissions, credentials, MFA or the"
                " account's legal and contact details."
            ),
            response=RESPONSE,
        )
    ]
