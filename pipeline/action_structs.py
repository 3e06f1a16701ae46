"""The typed shape of an ingest message (ProviderAction), as msgspec decodes it: the structs of
the ingest service's validator (pipeline/action_decoder.py, which says what they check and
what is left to it).

A module of its own, and always Python: the optional mypyc build (tools/compile_detectors.py)
compiles the validator but not this module, since msgspec reads a Struct's annotations when
it builds the decoder, and the annotations of a class in a compiled module do not read back as
the `Annotated` types written here.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from pipeline.rejection import MAX_LIST, MAX_STR

__all__ = ["DECODER", "Action", "Actor", "Amount", "Change", "Resource", "Source"]


def _text(max_len: int) -> Any:
    return Annotated[str, Meta(min_length=1, max_length=max_len)]


class Actor(Struct, forbid_unknown_fields=True):
    type: _text(MAX_STR)  # type: ignore[valid-type]
    principal_id: _text(128)  # type: ignore[valid-type]
    provider_id: _text(128) | None = None  # type: ignore[valid-type]


class Source(Struct, forbid_unknown_fields=True):
    ip: str | None = None
    user_agent: _text(MAX_STR) | None = None  # type: ignore[valid-type]
    session_id: _text(MAX_STR) | None = None  # type: ignore[valid-type]


class Resource(Struct, forbid_unknown_fields=True):
    type: _text(MAX_STR) | None = None  # type: ignore[valid-type]
    id: _text(MAX_STR) | None = None  # type: ignore[valid-type]


Scalar = str | int | float | bool | None


class Change(Struct, forbid_unknown_fields=True):
    field: _text(128)  # type: ignore[valid-type]
    old: Scalar = None
    new: Scalar = None


class Amount(Struct, forbid_unknown_fields=True):
    value: _text(32)  # type: ignore[valid-type]
    currency: _text(3)  # type: ignore[valid-type]


class Action(Struct, forbid_unknown_fields=True):
    """A ProviderAction as decoded: absent fields that `parse_action` tells from null are UNSET
    (null there is refused by the decoder, and so left to `parse_action`)."""

    action: _text(MAX_STR)  # type: ignore[valid-type]
    event_id: _text(128)  # type: ignore[valid-type]
    account_id: _text(64)  # type: ignore[valid-type]
    occurred_at: str
    actor: Actor
    marketplace: _text(16) | None = None  # type: ignore[valid-type]
    source: Source | UnsetType = UNSET
    operation: _text(128) | None = None  # type: ignore[valid-type]
    approval_id: _text(128) | None = None  # type: ignore[valid-type]
    resource: Resource | UnsetType = UNSET
    changes: Annotated[list[Change], Meta(max_length=MAX_LIST)] | UnsetType = UNSET
    amount: Amount | UnsetType = UNSET
    outcome: _text(MAX_STR) | None = None  # type: ignore[valid-type]
    grant: Any = UNSET
    approval: Any = UNSET
    policy: Any = UNSET
    origin: Any = UNSET


#: Decodes one ingest message into an `Action` (pipeline/action_decoder.py checks the rest).
DECODER = msgspec.json.Decoder(Action)
