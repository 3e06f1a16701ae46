"""The closed vocabularies of the external contract (docs/contract.md), in one place."""

from __future__ import annotations

from pipeline.marketplaces import SITES

ACTIONS: frozenset[str] = frozenset(
    {
        "listing.create",
        "listing.update",
        "listing.delete",
        "listing.price_change",
        "inventory.update",
        "ads.campaign_update",
        "tax.filing",
        "report.download",
        "report.request",
        "report.schedule",
        "data.read",
        "data.write",
        "funds.bank_account_change",
        "funds.disbursement_request",
        "funds.refund",
        "funds.transfer_schedule_change",
        "permission.grant",
        "permission.revoke",
        "permission.suspend",
        "permission.resume",
        "permission.data_token",
        "permission.notification_change",
        "auth.login",
        "auth.credentials_create",
        "auth.mfa_change",
        "account.contact_change",
        "account.legal_info_change",
        "approval.grant",
        "policy.update",
        # What Amazon reports (actor `amazon`): notifications and polled state (issue 18)
        "listing.status_change",
        "listing.issues_change",
        "listing.price_observed",
        "listing.attributes_observed",
        "inventory.quantity_observed",
        "account.status_change",
        "funds.transaction_posted",
        "funds.payout_observed",
        "report.processing_finished",
        "feed.processing_finished",
        "notification.received",
    }
)

#: The actions that record what Amazon observed, not what someone asked for (issue 18): the
#: reconciliation (detectors/rules/change_outside_gateway.py) compares them with gateway calls.
OBSERVED_ACTIONS: frozenset[str] = frozenset(
    {
        "listing.status_change",
        "listing.issues_change",
        "listing.price_observed",
        "listing.attributes_observed",
        "inventory.quantity_observed",
        "account.status_change",
        "funds.transaction_posted",
        "funds.payout_observed",
        "report.processing_finished",
        "feed.processing_finished",
        "notification.received",
    }
)

#: The site codes events store (pipeline/marketplaces.py: marketplace IDs and `GB` are accepted
#: too, and stored as these codes).
MARKETPLACES: frozenset[str] = SITES

#: Actions under these prefixes name the site they act on.
MARKETPLACE_REQUIRED_PREFIXES: tuple[str, ...] = (
    "listing.",
    "inventory.",
    "ads.",
    "funds.",
    "tax.",
)

#: Actions that move money carry an amount. (`funds.disbursement_request` may not: Amazon's
#: initiatePayout pays out the whole available balance without naming it.)
AMOUNT_REQUIRED: frozenset[str] = frozenset({"funds.refund"})

ACTOR_TYPES: frozenset[str] = frozenset({"provider", "seller", "amazon"})
OUTCOMES: frozenset[str] = frozenset({"success", "failure", "denied"})
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")

#: Actions that write to the seller's account (used by detectors and rollups).
WRITE_PREFIXES: tuple[str, ...] = ("listing.", "inventory.", "ads.", "funds.", "tax.", "account.")


def needs_marketplace(action: str) -> bool:
    """True for actions that act on one marketplace site."""
    return action.startswith(MARKETPLACE_REQUIRED_PREFIXES)


def action_matches(pattern: str, action: str) -> bool:
    """Match a grant scope pattern (`listing.*`, `inventory.update`, `*`) against an action."""
    if pattern in ("*", action):
        return True
    if pattern.endswith(".*"):
        return action.startswith(pattern[:-1])
    return False
