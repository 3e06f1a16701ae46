"""Mask bank account numbers and personal data in a validated event, before it is sequenced.

The ingest agent calls `mask_event` right after `pipeline.event.parse_action`, so the ledger, the
warehouse, the alerts and everything downstream only ever see the masked form. A masked value is

    {"sha256": "<64 hex digits>", "last4": "<at most 4 characters>"}     in changes[].old / .new
    "sha256:<64 hex digits>:<last4>"                                     in every other place

`sha256` is HMAC-SHA256 keyed with `PW_MASK_KEY` over the value as it reads (`sensitive.plain`:
fullwidth digits are digits) with separators removed (so `DE89 3704 0044 0532 0130 00` and
`DE89370400440532013000` hash the same), stable across workers and restarts: two events naming
the same account, principal or card still match, so detectors correlate as before. With no key
it is a plain SHA-256 of a fixed prefix and the value, which anyone can recompute for a guessed
number: set `PW_MASK_KEY` in production. `last4` is the last 4 significant characters, and never
more than half of them, so a short value is never revealed whole. The string form fits the
identifier grammar of every field it replaces (`pipeline.identifiers`).

What is masked:
- every string of the event in which `pipeline.sensitive.find_sensitive` finds a card number
  (Luhn), an IBAN (mod 97), an e-mail address or a phone number, masked whole: `event_id`,
  `operation`, `approval_id`, `actor.provider_id`, `actor.principal_id`, `source.user_agent`,
  `source.session_id`, `resource.type`, `resource.id`, `changes[].field`, `grant.grant_id`,
  `grant.provider_id`, `grant.principals[]`, `grant.skus[]`, `approval.approval_id`,
  `approval.resource_id`, `approval.approved_by`, and every key and string inside `policy` and
  `origin` (but `origin.adapter`);
- in `changes[].old` / `.new`, `policy` and `origin` (free text) also a run of 9 or more digits;
- every number in `changes`, `policy` and `origin` that is a card number;
- every change of `funds.bank_account_change`, `account.contact_change`, `account.legal_info_change`,
  and a change whose field name names bank or personal data (`SENSITIVE_FIELD`), whatever it holds
  (null and booleans stay as they are);
- `resource.id` of those actions or of a bank or personal resource type.

Never masked, because nothing sensitive fits their grammar or they are the event's identity:
`account_id` (`pipeline.event` refuses one that holds such a value), `occurred_at`, `action`,
`marketplace`, `outcome`, `actor.type`, `source.ip`, `amount`, prices (`changes` of field
`price`: decimals of at most 12 integer digits), grant scopes, sites, networks, limits, hours and
expiry, and approval actions and expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from pipeline.event import Event
from pipeline.sensitive import card_number, find_sensitive, plain

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
#: Names already checked against SENSITIVE_FIELD (field names and resource types repeat from
#: event to event, and the search is costly: about 1.8 µs); bounded, past it checked every time.
_NAME_VERDICTS: dict[str, bool] = {}
_NAME_LIMIT = 4096
#: A value masked already (string form): masking is idempotent.
MASKED_TEXT = re.compile(r"sha256:[0-9a-f]{64}:.{0,4}", re.DOTALL)
_SEPARATORS = re.compile(r"[\s\-./]+")
_UNKEYED_PREFIX = b"partnerwatch-mask-v1:"
#: How many clean strings a `Masker` remembers (of each kind); past that, each is checked again.
CLEAN_LIMIT = 100_000

#: The strings of each part of an event that are masked when they hold a sensitive value.
_TOP = ("event_id", "operation", "approval_id")
_PARTS = {
    "actor": ("provider_id", "principal_id"),
    "source": ("user_agent", "session_id"),
    "grant": ("grant_id", "provider_id"),
    "approval": ("approval_id", "resource_id", "approved_by"),
}


class Masker:
    """Masks values with one key; build once per process (`Masker(settings.mask_key)`)."""

    def __init__(self, key: str = "") -> None:
        self._key = key.encode()
        #: Strings found to hold nothing sensitive, as an identifier and as free text: events
        #: repeat them (principals, user agents, SKUs, field names), and the checks are costly.
        #: Bounded; a sensitive value is never kept here.
        self._clean: set[str] = set()
        self._clean_free: set[str] = set()

    def digest(self, value: Any) -> str:
        text = _compact(value).encode("utf-8", "surrogatepass")
        if self._key:
            return hmac.new(self._key, text, hashlib.sha256).hexdigest()
        return hashlib.sha256(_UNKEYED_PREFIX + text).hexdigest()

    def mask(self, value: Any) -> dict[str, str]:
        """`{"sha256": ..., "last4": ...}` for one value."""
        compact = _compact(value)
        shown = min(4, len(compact) // 2)
        return {
            "sha256": self.digest(value),
            "last4": compact[len(compact) - shown :] if shown else "",
        }

    def mask_text(self, value: Any) -> str:
        masked = self.mask(value)
        return f"sha256:{masked['sha256']}:{masked['last4']}"

    def mask_event(self, event: Event) -> Event:
        """The event with its sensitive values masked (a new dict where anything changes; the
        event itself, and each part that holds nothing to mask, where nothing does)."""
        whole = event["action"] in SENSITIVE_ACTIONS
        changed: dict[str, Any] = {}
        for name in _TOP:
            value = event.get(name)
            if value is not None:
                # event ids never repeat (inside the dedup window): not worth remembering
                masked_value = self._identifier(value, remember=name != "event_id")
                if masked_value is not value:
                    changed[name] = masked_value
        for part, names in _PARTS.items():
            value = event.get(part)
            if value is not None:
                masked_part = self._part(value, names)
                if masked_part is not value:
                    changed[part] = masked_part
        grant = changed.get("grant", event.get("grant"))
        for name in ("principals", "skus"):
            if grant and grant.get(name):
                masked_list = [self._identifier(p) for p in grant[name]]
                if masked_list != grant[name]:
                    grant = changed["grant"] = {**grant, name: masked_list}
        if "resource" in event:
            resource = self._resource(event["resource"], whole)
            if resource is not event["resource"]:
                changed["resource"] = resource
        if event.get("changes"):
            masked = [self._change(c, whole) for c in event["changes"]]
            if any(m is not c for m, c in zip(masked, event["changes"], strict=True)):
                changed["changes"] = masked
        if "policy" in event:
            policy = self._free(event["policy"])
            if policy is not event["policy"]:
                changed["policy"] = policy
        if "origin" in event:  # the adapter's name stays: it names our code, not a person
            kept = {k: v for k, v in event["origin"].items() if k != "adapter"}
            masked_origin = self._free(kept)
            if masked_origin is not kept:
                changed["origin"] = {"adapter": event["origin"]["adapter"], **masked_origin}
        return {**event, **changed} if changed else event

    # -- parts -----------------------------------------------------------------------------------

    def _identifier(self, value: str, *, remember: bool = True) -> str:
        """An id or label: masked whole (string form) when it holds a sensitive value."""
        if value in self._clean or MASKED_TEXT.fullmatch(value):
            return value
        if not find_sensitive(value):
            if remember and len(self._clean) < CLEAN_LIMIT:
                self._clean.add(value)
            return value
        return self.mask_text(value)

    def _part(self, part: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        """`part` with the strings under `names` masked (`part` itself where none changes)."""
        out = part
        for k in names:
            v = part.get(k)
            if isinstance(v, str):
                m = self._identifier(v)
                if m is not v:
                    if out is part:
                        out = dict(part)
                    out[k] = m
        return out

    def _resource(self, resource: dict[str, str], whole: bool) -> dict[str, str]:
        out = self._part(resource, ("type", "id"))
        rid = resource.get("id")
        by_kind = whole or _sensitive_name(resource.get("type", ""))
        if rid is not None and by_kind and out["id"] is rid and not MASKED_TEXT.fullmatch(rid):
            out = {**out, "id": self.mask_text(rid)}
        return out

    def _change(self, change: dict[str, Any], whole: bool) -> dict[str, Any]:
        field = change["field"]
        by_field = whole or _sensitive_name(field)
        out = change
        masked_field = self._identifier(field)
        if masked_field is not field:
            out = {**change, "field": masked_field}
        for side in ("old", "new"):
            value = change.get(side)
            if value is None or isinstance(value, bool) or _is_mask(value):
                continue
            if by_field or (field != "price" and self._sensitive_free(value)):
                if out is change:
                    out = dict(change)
                out[side] = self.mask(value)
        return out

    def _free(self, value: Any) -> Any:
        """Policy values, any depth: keys and strings by pattern (free text), card numbers."""
        if isinstance(value, dict):
            items = [(self._free_key(k), self._free(v)) for k, v in value.items()]
            if all(
                k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)
            ):
                return value
            return dict(items)
        if isinstance(value, list):
            masked = [self._free(v) for v in value]
            return value if all(m is v for m, v in zip(masked, value, strict=True)) else masked
        if self._sensitive_free(value) and not (
            isinstance(value, str) and MASKED_TEXT.fullmatch(value)
        ):
            return self.mask_text(value)
        return value

    def _sensitive_free(self, value: Any) -> bool:
        """`_sensitive_value(value, free_text=True)`, remembering strings found clean."""
        if isinstance(value, str):
            if value in self._clean_free:
                return False
            if find_sensitive(value, free_text=True) is not None:
                return True
            if len(self._clean_free) < CLEAN_LIMIT:
                self._clean_free.add(value)
            return False
        return _sensitive_value(value, free_text=True)

    def _free_key(self, key: str) -> str:
        if MASKED_TEXT.fullmatch(key) or not find_sensitive(key, free_text=True):
            return key
        return self.mask_text(key)


def _sensitive_name(name: str) -> bool:
    """Whether a field name or resource type names bank or personal data (`SENSITIVE_FIELD`)."""
    verdict = _NAME_VERDICTS.get(name)
    if verdict is None:
        verdict = SENSITIVE_FIELD.search(name) is not None
        if len(_NAME_VERDICTS) < _NAME_LIMIT:
            _NAME_VERDICTS[name] = verdict
    return verdict


def _sensitive_value(value: Any, *, free_text: bool) -> bool:
    if isinstance(value, str):
        return find_sensitive(value, free_text=free_text) is not None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return card_number(value)
    return False


def _compact(value: Any) -> str:
    """The value as it reads, separators removed (an integral float as its integer)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _SEPARATORS.sub("", plain(str(value)))


def _is_mask(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"sha256", "last4"}
