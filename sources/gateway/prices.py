"""Amounts and prices as SP-API documents carry them, as the plain decimal strings events hold."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.marketplaces import site_code


def decimal_text(value: Any) -> str | None:
    """A JSON number or numeric string as a plain decimal string (`19.99`), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite() or abs(number) >= Decimal(10) ** 18:
        return None
    text = format(number.quantize(Decimal("0.00000001")).normalize(), "f")
    return text if re.fullmatch(r"-?[0-9]{1,18}(\.[0-9]{1,8})?", text) else None


def our_price(offer_values: Any, site: str | None) -> str | None:
    """The `our_price` of a `purchasable_offer` value for the site (audience ALL first)."""
    if not isinstance(offer_values, list):
        return None
    offers = [o for o in offer_values if isinstance(o, dict)]
    mine = [o for o in offers if site_code(o.get("marketplace_id")) in (site, None)] or offers
    mine.sort(key=lambda o: o.get("audience", "ALL") != "ALL")
    for offer in mine:
        prices = offer.get("our_price")
        if not isinstance(prices, list):
            continue
        for price in prices:
            schedule = price.get("schedule") if isinstance(price, dict) else None
            if isinstance(schedule, list) and schedule and isinstance(schedule[0], dict):
                text = decimal_text(schedule[0].get("value_with_tax", schedule[0].get("value")))
                if text is not None:
                    return text
    return None
