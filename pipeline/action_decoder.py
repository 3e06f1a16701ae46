"""The ingest service's validator: one typed decode (msgspec) and the remaining checks.

`decode_action(raw)` returns exactly what `pipeline.event.parse_action(raw)` returns, faster: the
message is decoded once, straight into typed structs (`msgspec`), which checks JSON types, the
fields each object may hold and string lengths while decoding; what is left (grammars,
vocabularies, timestamps, decimals, integer range, the account id's content) is checked here in
`parse_action`'s order. Values that repeat from event to event (principal ids, user agents,
operations, field names, IP addresses) are checked once per distinct value.

Anything this path does not accept, for whatever reason (a type msgspec refuses, a failed
check, a shape it does not cover), goes to `parse_action` itself, which accepts it or raises
the `Rejected` (reason and detail) it always did: so the reasons cannot drift, and this module
only ever has to be right about what it accepts. `tests/unit/test_action_decoder.py` checks the
two against each other on generated messages (hypothesis) and on the simulator's traffic.

Grants, approvals, policies and `origin` (rare, and free-form) are decoded as plain JSON values
and checked by the same functions `parse_action` uses.

The structs themselves are in pipeline/action_structs.py, a module the optional mypyc build
(tools/compile_detectors.py) leaves as Python: msgspec reads a Struct's annotations when it
builds the decoder, and the annotations of a class mypyc compiled do not read back as the
`Annotated` types written here (every message would fail to decode, and go the slow way).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Final

import msgspec
from msgspec import UNSET

from pipeline import grant_schema
from pipeline.action_structs import DECODER as _DECODER
from pipeline.action_structs import Action as _Action
from pipeline.action_structs import Actor as _Actor
from pipeline.action_structs import Amount as _Amount
from pipeline.action_structs import Change as _Change
from pipeline.action_structs import Source as _Source
from pipeline.contract import ACTIONS, ACTOR_TYPES, AMOUNT_REQUIRED, OUTCOMES, needs_marketplace
from pipeline.event import Event, Rejected, canonical_ip, parse_action, timestamp
from pipeline.identifiers import GRAMMARS
from pipeline.marketplaces import site_code
from pipeline.memo import MISSING, Memo
from pipeline.origin import check_origin
from pipeline.rejection import MAX_INT, MAX_STR, check_numbers
from pipeline.sensitive import find_sensitive

__all__ = ["decode_action"]


class _Defer(Exception):
    """This path does not accept the message; `parse_action` decides (not an error)."""


def decode_action(raw: bytes, max_bytes: int = 65536) -> Event:
    """Validate one ingest message and return the normalized event, or raise `Rejected`:
    the same result as `pipeline.event.parse_action(raw, max_bytes)`."""
    if len(raw) <= max_bytes:
        try:
            return _normalize(_DECODER.decode(raw))
        except (
            msgspec.MsgspecError,
            Rejected,
            _Defer,
            ValueError,
            TypeError,
            KeyError,
            RecursionError,
        ):
            pass
    return parse_action(raw, max_bytes)


#: Values already found to fit a grammar, per kind (bounded: past the limit, checked every time).
_FITS: dict[str, set[str]] = {kind: set() for kind in GRAMMARS}
_FITS_LIMIT = 65_536


def _fits(value: str, kind: str, *, remember: bool = True) -> str:
    known = _FITS[kind]
    if value in known:
        return value
    if not GRAMMARS[kind].matches(value):
        raise _Defer
    if remember and len(known) < _FITS_LIMIT:
        known.add(value)
    return value


#: `_account_holds_sensitive`'s and `_valid_day`'s results (pipeline/memo.py: each asked once an
#: event, of values that repeat).
_SENSITIVE_ACCOUNTS: Final = Memo(65536)
_VALID_DAYS: Final = Memo(4096)


def _account_holds_sensitive(account_id: str) -> bool:
    found = _SENSITIVE_ACCOUNTS.get(account_id)
    if found is MISSING:
        found = _SENSITIVE_ACCOUNTS.put(account_id, find_sensitive(account_id) is not None)
    holds: bool = found
    return holds


_MS_UTC = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
)


def _valid_day(day: str) -> bool:
    """A real calendar day of the years `timestamp` accepts."""
    found = _VALID_DAYS.get(day)
    if found is MISSING:
        found = _VALID_DAYS.put(day, _is_day(day))
    valid: bool = found
    return valid


def _is_day(day: str) -> bool:
    try:
        return 1970 <= date(int(day[:4]), int(day[5:7]), int(day[8:10])).year <= 2200
    except ValueError:
        return False


def _timestamp(value: str, name: str) -> str:
    """`pipeline.event.timestamp`, without parsing a value already in its output form (UTC,
    milliseconds, `Z`): that form is its own normalization once the day is a real one."""
    if len(value) == 24 and _MS_UTC.fullmatch(value) and _valid_day(value[:10]):
        return value
    return timestamp(value, name)


_DECIMAL = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,8})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _ip(value: str) -> str:
    canonical = canonical_ip(value) if len(value) <= 64 else None
    if canonical is None:
        raise _Defer
    return canonical


def _normalize(doc: _Action) -> Event:
    """`pipeline.event.normalize` over the decoded structs; `_Defer` where it would reject."""
    action = doc.action
    if action not in ACTIONS:
        raise _Defer
    event_id = _fits(doc.event_id, "event", remember=False)  # never repeats: not worth remembering
    account_id = _fits(doc.account_id, "account")
    if _account_holds_sensitive(account_id):
        raise _Defer
    out: Event = {
        "event_id": event_id,
        "occurred_at": _timestamp(doc.occurred_at, "occurred_at"),
        "account_id": account_id,
        "action": action,
        "actor": _actor(doc.actor),
        "outcome": "success",
    }
    marketplace = doc.marketplace
    if marketplace is None:
        if needs_marketplace(action):
            raise _Defer
    else:
        code = site_code(marketplace)
        if code is None:
            raise _Defer
        out["marketplace"] = code
    if doc.source is not UNSET:
        out["source"] = _source(doc.source)
    if doc.operation is not None:
        out["operation"] = _fits(doc.operation, "label")
    if doc.approval_id is not None:
        out["approval_id"] = _fits(doc.approval_id, "name")
    if doc.resource is not UNSET:
        resource: dict[str, str] = {}
        if doc.resource.type is not None:
            resource["type"] = _fits(doc.resource.type, "label")
        if doc.resource.id is not None:
            resource["id"] = _fits(doc.resource.id, "label")
        out["resource"] = resource
    if doc.changes is not UNSET:
        out["changes"] = [_change(c) for c in doc.changes]
    if doc.amount is not UNSET:
        out["amount"] = _amount(doc.amount)
    elif action in AMOUNT_REQUIRED:
        raise _Defer
    if doc.outcome is not None:
        if doc.outcome not in OUTCOMES:
            raise _Defer
        out["outcome"] = doc.outcome
    # Rare and free-form: the same checks as parse_action, on the decoded JSON values.
    if action in ("permission.grant", "permission.revoke") or doc.grant is not UNSET:
        if doc.grant is UNSET or doc.grant is None:
            raise _Defer
        out["grant"] = grant_schema.grant(
            doc.grant, revoke=action == "permission.revoke", timestamp=timestamp
        )
    if action == "approval.grant" or doc.approval is not UNSET:
        if doc.approval is UNSET or doc.approval is None:
            raise _Defer
        out["approval"] = grant_schema.approval(doc.approval, timestamp=timestamp)
    if action == "policy.update" or doc.policy is not UNSET:
        if doc.policy is UNSET or doc.policy is None:
            raise _Defer
        out["policy"] = grant_schema.policy(doc.policy)
    if doc.origin is not UNSET:
        out["origin"] = check_origin(doc.origin)
        check_numbers(out["origin"], "origin")
    return out


def _actor(actor: _Actor) -> dict[str, str]:
    if actor.type not in ACTOR_TYPES:
        raise _Defer
    out = {"type": actor.type, "principal_id": _fits(actor.principal_id, "name")}
    if actor.provider_id is not None:
        out["provider_id"] = _fits(actor.provider_id, "name")
    elif actor.type == "provider":
        raise _Defer
    return out


def _source(source: _Source) -> dict[str, str]:
    out: dict[str, str] = {}
    if source.ip is not None:
        out["ip"] = _ip(source.ip)
    if source.user_agent is not None:
        out["user_agent"] = _fits(source.user_agent, "user_agent")
    if source.session_id is not None:
        out["session_id"] = _fits(source.session_id, "session")
    return out


def _change(change: _Change) -> dict[str, Any]:
    field = _fits(change.field, "label")
    old, new = change.old, change.new
    for value in (old, new):
        if isinstance(value, str):
            if len(value) > MAX_STR * 8:
                raise _Defer
        elif type(value) is int and abs(value) > MAX_INT:
            raise _Defer
    if field == "price":
        for price in (old, new):
            if price is not None and not (isinstance(price, str) and _DECIMAL.fullmatch(price)):
                raise _Defer
    return {"field": field, "old": old, "new": new}


def _amount(amount: _Amount) -> dict[str, str]:
    if not _DECIMAL.fullmatch(amount.value) or not _CURRENCY.fullmatch(amount.currency):
        raise _Defer
    return {"value": amount.value, "currency": amount.currency}
