"""An SP-API call as the gateway sees it, and the events it plans from it (classify.py plans).

`Call` is the request as received, `Operation` the named SP-API operation with one `Planned`
event per event the call becomes, and `Memory` what the planning may ask about earlier calls
and answers (the gateway's store-backed memory, app.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from pipeline.marketplaces import site_code

_SUMMARY_CHARS = 256


class Memory(Protocol):
    """What the gateway remembers of earlier calls and answers."""

    def report_type(self, ident: str) -> str | None: ...

    def price(self, sku: str, marketplace: str) -> str | None: ...

    def feed_document(self, document_id: str) -> bytes | None: ...


@dataclass
class Call:
    """One SP-API request as the gateway received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None  # the JSON body, parsed (None: none, or not JSON)
    approval_id: str | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def marketplace_ids(self) -> list[str]:
        out: list[str] = []
        for name in ("marketplaceIds", "marketplaceId", "MarketplaceId", "MarketplaceIds"):
            for value in self.query.get(name, ()):
                out += [v for v in value.split(",") if v]
        return out


@dataclass
class Planned:
    """One event the call becomes (before the outcome is known)."""

    action: str
    operation: str
    marketplaces: list[str] = field(default_factory=list)  # site codes ("?" for unknown names)
    resource: dict[str, str] | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    amount: dict[str, str] | None = None
    sku: str | None = None
    old_price: str | None = None
    new_price: str | None = None
    origin: dict[str, Any] = field(default_factory=dict)
    suffix: str = ""  # event id suffix (a feed message)


@dataclass
class Operation:
    name: str
    upstream_scope: str = ""  # a grantless operation's LWA scope
    params: dict[str, str] = field(default_factory=dict)
    planned: list[Planned] = field(default_factory=list)


def site_codes(ids: list[str]) -> list[str]:
    return [site_code(i) or "?" for i in ids]


def summary(value: Any) -> str:
    """A value as it appears in an event's changes or origin: JSON, cut to 256 characters."""
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."
