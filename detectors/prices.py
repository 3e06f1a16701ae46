"""Price moves read from a `listing.price_change` event, in exact decimal arithmetic.

The contract carries prices as decimal strings; percentages are computed with
`decimal.Decimal`, never floats, so a move of exactly a limit is exactly the limit.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.event import Event


def _price(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def price_move(event: Event) -> tuple[Decimal, Decimal, Decimal] | None:
    """(old, new, percent moved) of the event's `price` change, when it can be measured: None
    without a price change, or when the old price is missing or not positive."""
    for change in event.get("changes", ()):
        if change["field"] != "price":
            continue
        old, new = _price(change.get("old")), _price(change.get("new"))
        if old is None or new is None or old <= 0:
            return None
        return old, new, abs(new - old) * 100 / old
    return None
