"""Mask bank account numbers and personal data in a validated event, before it is sequenced.

The ingest agent calls `mask_event` right after `pipeline.event.parse_action`, so the ledger, the
warehouse, the alerts and everything downstream only ever see the masked form. A masked value is

    {"sha256": "<64 hex digits>", "last4": "<at most 4 characters>"}

`sha256` is HMAC-SHA256 keyed with `PW_MASK_KEY` over the value with separators removed (so
`DE89 3704 0044 0532 0130 00` and `DE89370400440532013000` hash the same), stable across
workers and restarts: two events naming the same account can still be matched. With no key it
is a plain SHA-256 of a fixed prefix and the value, which anyone can recompute for a guessed
number: set `PW_MASK_KEY` in production. `last4` is the last 4 significant characters, and
never more than half of them, so a short value is never revealed whole.

What is masked in `changes` (old and new; null and booleans stay as they are):
- every change of `funds.bank_account_change`, `account.contact_change`, `account.legal_info_change`;
- a change whose field name names bank or personal data (`SENSITIVE_FIELD`);
- any other string value holding an IBAN, a run of 9 or more digits, or an e-mail address
  (`price` excepted: a validated decimal, read by the price rule; a bare timestamp excepted).
`resource.id` is masked (sensitive action or resource type, or an IBAN or e-mail in it) into the string form `sha256:<hex>:<last4>` (the
field stays a string). Nothing else is changed: detectors read actions, actors, sources,
prices and amounts, never these values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from pipeline.event import Event

SENSITIVE_ACTIONS = frozenset(
    {"funds.bank_account_change", "account.contact_change", "account.legal_info_change"}
)
#: Field names that hold bank or personal data, whatever the action.
SENSITIVE_FIELD = re.compile(
    r"bank|iban|^bic$|bic_?code|swift|account_?(number|no|num)|routing|sort_?code|^card$|card_?(number|no)"
    r"|e_?mail|phone|mobile|fax|address|street|postal|post_?code|^zip|zip_?code|tax_?id|vat_?(id|number|no)"
    r"|ssn|national_id|passport|birth|(first|last|full|legal|given|family|holder|owner)_?name|contact",
    re.IGNORECASE,
)
#: Content that is bank or personal data in any field: an IBAN (also spaced in groups of four) or
#: an e-mail address ...
IBAN_OR_EMAIL = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){10,30}|[^\s@]+@[^\s@]+\.[^\s@]+"
)
#: ... or 9+ digits in a row (single spaces or dashes between them allowed): an account, card or
#: phone number. Timestamps are not (`TIMESTAMP`).
DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){8,}")
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9:.]+([Zz]|[+-][0-9:]+)?)?")
_SEPARATORS = re.compile(r"[\s\-./]+")
_UNKEYED_PREFIX = b"partnerwatch-mask-v1:"


class Masker:
    """Masks values with one key; build once per process (`Masker(settings.mask_key)`)."""

    def __init__(self, key: str = "") -> None:
        self._key = key.encode()

    def digest(self, value: Any) -> str:
        text = _SEPARATORS.sub("", str(value)).encode("utf-8", "surrogatepass")
        if self._key:
            return hmac.new(self._key, text, hashlib.sha256).hexdigest()
        return hashlib.sha256(_UNKEYED_PREFIX + text).hexdigest()

    def mask(self, value: Any) -> dict[str, str]:
        """`{"sha256": ..., "last4": ...}` for one value."""
        compact = _SEPARATORS.sub("", str(value))
        shown = min(4, len(compact) // 2)
        return {"sha256": self.digest(value), "last4": compact[len(compact) - shown:] if shown else ""}

    def mask_text(self, value: str) -> str:
        masked = self.mask(value)
        return f"sha256:{masked['sha256']}:{masked['last4']}"

    def mask_event(self, event: Event) -> Event:
        """The event with its sensitive values masked (a new dict where anything changes)."""
        whole = event["action"] in SENSITIVE_ACTIONS
        out = event
        changes = event.get("changes")
        if changes:
            masked = [self._change(c, whole) for c in changes]
            if any(m is not c for m, c in zip(masked, changes, strict=True)):
                out = {**out, "changes": masked}
        resource = event.get("resource")
        rid = resource.get("id") if resource else None
        if resource and isinstance(rid, str) and (
            whole or SENSITIVE_FIELD.search(resource.get("type", "")) or IBAN_OR_EMAIL.search(rid)
        ):
            out = {**out, "resource": {**resource, "id": self.mask_text(rid)}}
        return out

    def _change(self, change: dict[str, Any], whole: bool) -> dict[str, Any]:
        field = change["field"]
        by_field = whole or bool(SENSITIVE_FIELD.search(field))
        out = change
        for side in ("old", "new"):
            value = change.get(side)
            if value is None or isinstance(value, bool) or _is_mask(value):
                continue
            if by_field or (field != "price" and isinstance(value, str) and sensitive_text(value)):
                if out is change:
                    out = dict(change)
                out[side] = self.mask(value)
        return out


def sensitive_text(value: str) -> bool:
    """Does free text hold an IBAN, an e-mail address or a long number (not a timestamp)?"""
    if IBAN_OR_EMAIL.search(value):
        return True
    return bool(DIGIT_RUN.search(value)) and not TIMESTAMP.fullmatch(value)


def _is_mask(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"sha256", "last4"}
