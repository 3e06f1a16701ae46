"""Recommended response steps that alerts carry, in the words a seller's security team acts on."""

from __future__ import annotations

REVOKE = (
    "Revoke the provider's permissions in Seller Central (User Permissions) and its SP-API"
    " authorization (Apps and Services > Manage Your Apps) until the activity is explained."
)
ROTATE = "Rotate the credentials the principal used (SP-API refresh token, Seller Central password, MFA device)."
CASE = (
    "Open a case with the marketplace (Seller Support) citing the evidence events with their UTC"
    " timestamps; attach `partnerwatch evidence` output."
)
CONFIRM = "Get the provider's written confirmation of who acted, from where and why."
PRESERVE = "Preserve the records: keep audit.events and audit.alerts for at least two years (PW_RETENTION_DAYS)."
FUNDS = (
    "Check Payments > Disbursements and the deposit method now; cancel pending disbursements"
    " and restore the verified bank account."
)

#: The standard response for abuse of delegated access.
ABUSE: tuple[str, ...] = (REVOKE, CONFIRM, CASE, PRESERVE)
#: For a provider's API traffic far beyond its usual or agreed rate.
API_ABUSE: tuple[str, ...] = (
    "Check the provider's integration with them: a runaway job, or a leaked SP-API token?",
    ROTATE,
    *ABUSE,
)
#: For a suspected account or fund takeover: act on the money first.
TAKEOVER: tuple[str, ...] = (FUNDS, REVOKE, ROTATE, CASE, PRESERVE)
#: For operational drift (sync failures, late filings): talk before revoking.
DRIFT: tuple[str, ...] = (CONFIRM, PRESERVE)
