"""What a provider's grants allow, as the authorization rules read them.

pipeline/authorization.py folds grants and decides which are live for a principal
(`covering`); this module adds the questions several rules and the behaviour features ask of
those grants: may it do this action on this site, is it inside its active hours, and, when no
grant covers the principal, why not.
"""

from __future__ import annotations

from detectors.windows import local_time
from pipeline.authorization import AccountGrants, Grant, allows_scope
from pipeline.event import Event

#: Catalogue and advertising writes: listing_out_of_scope judges them, the no-grant rule leaves
#: them to it.
CATALOGUE_PREFIXES = ("listing.", "inventory.", "ads.")

#: Actions no co-operation partner needs: handing out permissions, creating credentials,
#: changing MFA, the legal entity or the contact details (the steps of an account takeover);
#: and, through the SP-API gateway, the ways to standing or restricted access: a Restricted Data
#: Token, a notification destination or subscription, a report schedule.
SENSITIVE_ACTIONS = frozenset(
    {
        "permission.grant",
        "permission.data_token",
        "permission.notification_change",
        "report.schedule",
        "auth.credentials_create",
        "auth.mfa_change",
        "account.legal_info_change",
        "account.contact_change",
    }
)


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


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def within_hours(grant: Grant, ts: str) -> bool:
    """`ts` falls inside the grant's `active_hours` (none: always), in the grant's time zone.

    A window with `start` after `end` crosses midnight; `start` equal to `end` is the whole day;
    `end` is exclusive.
    """
    hours = grant.get("active_hours")
    if hours is None:
        return True
    local = local_time(ts, hours["tz"])
    now = local.hour * 60 + local.minute
    start, end = _minutes(hours["start"]), _minutes(hours["end"])
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight
