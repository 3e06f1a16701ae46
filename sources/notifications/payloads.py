"""What each notification type's payload says, as the parts of its events (events.py adds the envelope).

One reader per type (`READERS`); `read_other` for a type without one. A reader returns one part
per event: its action, site (None when the payload names none), resource, changes, amount and
the fields it adds to `origin`. Payload fields are read with `parse.get` / `parse.find`.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.marketplaces import site_code
from sources.gateway.prices import decimal_text
from sources.notifications.parse import Notification, find, get, text

Part = dict[str, Any]


def _site(value: Any) -> str | None:
    return site_code(text(value, 32))


def _joined(value: Any) -> str | None:
    if isinstance(value, list):
        items = sorted({t for t in (text(v, 64) for v in value[:50]) if t})
        return ",".join(items)[:1024] if items else ""
    return text(value, 1024)


def _listing_resource(payload: Any) -> tuple[dict[str, str], dict[str, Any]]:
    sku = text(get(payload, "Sku", "SellerSKU", "SellerSku"), 1024)
    asin = text(get(payload, "Asin"), 32)
    origin: dict[str, Any] = {}
    if asin:
        origin["asin"] = asin
    if sku:
        return {"type": "listing", "id": sku}, origin
    return {"type": "asin", "id": asin or "?"}, origin


def _status(n: Notification) -> list[Part]:
    p = n.payload
    resource, origin = _listing_resource(p)
    created = text(get(p, "CreatedDate"), 64)
    if created:
        origin["created_date"] = created
    status = _joined(get(p, "Status"))
    raw_site = text(get(p, "MarketplaceId"), 32)
    if raw_site and _site(raw_site) is None:
        origin["marketplace_id"] = raw_site
    return [
        {
            "action": "listing.status_change",
            "site": _site(raw_site),
            "resource": resource,
            "changes": [{"field": "status", "old": None, "new": status}],
            "origin": origin,
        }
    ]


def _issues(n: Notification) -> list[Part]:
    p = n.payload
    resource, origin = _listing_resource(p)
    changes = [
        {"field": "severities", "old": None, "new": _joined(get(p, "Severities"))},
        {"field": "enforcement_actions", "old": None, "new": _joined(get(p, "EnforcementActions"))},
    ]
    return [
        {
            "action": "listing.issues_change",
            "site": _site(get(p, "MarketplaceId")),
            "resource": resource,
            "changes": changes,
            "origin": origin,
        }
    ]


def _quantity(n: Notification) -> list[Part]:
    p = n.payload
    resource, origin = _listing_resource(p)
    quantity = get(p, "Quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or abs(quantity) > 2**53:
        quantity = None
    channel = text(get(p, "FulfillmentChannelCode"), 64)
    if channel:
        origin["fulfillment_channel_code"] = channel
    return [
        {
            "action": "inventory.quantity_observed",
            "site": _site(get(p, "MarketplaceId")),
            "resource": resource,
            "changes": [{"field": "quantity", "old": None, "new": quantity}],
            "origin": origin,
        }
    ]


def _money(value: Any) -> tuple[str | None, str | None]:
    amount = decimal_text(get(value, "Amount", "CurrencyAmount"))
    currency = text(get(value, "CurrencyCode"), 8)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        currency = None
    return amount, currency


def _any_offer(n: Notification) -> list[Part]:
    p = n.payload
    seller = text(get(p, "SellerId"), 64)
    trigger = get(p, "OfferChangeTrigger")
    asin = text(get(trigger, "ASIN"), 32)
    site = _site(get(trigger, "MarketplaceId"))
    offers = get(p, "Offers")
    parts = []
    for offer in offers[:100] if isinstance(offers, list) else []:
        if (
            not isinstance(offer, dict)
            or seller is None
            or text(get(offer, "SellerId"), 64) != seller
        ):
            continue
        price, currency = _money(get(offer, "ListingPrice"))
        if price is None:
            continue
        origin: dict[str, Any] = {
            "asin": asin or "?",
            "offer_change_type": text(get(trigger, "OfferChangeType"), 64),
        }
        if currency:
            origin["currency"] = currency
        condition = text(get(offer, "SubCondition"), 32)
        if condition:
            origin["condition"] = condition
        fba = get(offer, "IsFulfilledByAmazon")
        if isinstance(fba, bool):
            origin["fulfilled_by_amazon"] = fba
        parts.append(
            {
                "action": "listing.price_observed",
                "site": site,
                "resource": {"type": "asin", "id": asin or "?"},
                "changes": [{"field": "price", "old": None, "new": price}],
                "origin": {k: v for k, v in origin.items() if v is not None},
            }
        )
    if not parts:
        return [
            {
                "action": "notification.received",
                "site": site,
                "resource": {"type": "asin", "id": asin or "?"},
                "origin": {"own_offer": False},
            }
        ]
    return parts


def _pricing_health(n: Notification) -> list[Part]:
    p = n.payload
    trigger = get(p, "offerChangeTrigger")
    asin = text(get(trigger, "asin"), 32)
    site = _site(get(trigger, "marketplaceId"))
    price, currency = _money(get(get(p, "merchantOffer"), "listingPrice"))
    origin = {
        k: v
        for k, v in (
            ("asin", asin),
            ("currency", currency),
            ("issue_type", text(get(p, "issueType"), 64)),
        )
        if v
    }
    if price is None:
        return [
            {
                "action": "notification.received",
                "site": site,
                "resource": {"type": "asin", "id": asin or "?"},
                "origin": origin,
            }
        ]
    return [
        {
            "action": "listing.price_observed",
            "site": site,
            "resource": {"type": "asin", "id": asin or "?"},
            "changes": [{"field": "price", "old": None, "new": price}],
            "origin": origin,
        }
    ]


def _account_status(n: Notification) -> list[Part]:
    p = n.payload
    new = text(find(p, "currentAccountStatus", "newAccountStatus", "accountStatus", "status"), 64)
    old = text(find(p, "previousAccountStatus", "oldAccountStatus"), 64)
    seller = text(find(p, "sellerId", "merchantId"), 64)
    return [
        {
            "action": "account.status_change",
            "site": _site(find(p, "marketplaceId")),
            "resource": {"type": "account", "id": seller or "?"},
            "changes": [{"field": "account_status", "old": old, "new": new}],
        }
    ]


def _transaction(n: Notification) -> list[Part]:
    p = n.payload
    meta = get(p, "SellingPartnerMetadata")
    raw_site = text(get(meta, "MarketplaceId") or get(p, "MarketplaceId"), 32)
    amount, currency = _money(get(p, "TotalAmount"))
    origin: dict[str, Any] = {}
    for key, value in (
        ("transaction_type", get(p, "TransactionType")),
        ("posted_date", get(p, "PostedDate")),
        ("account_type", get(meta, "AccountType")),
        ("transaction_status", get(p, "TransactionStatus")),
    ):
        if text(value, 64):
            origin[key] = text(value, 64)
    if raw_site and _site(raw_site) is None:
        origin["marketplace_id"] = raw_site
    related = get(p, "RelatedIdentifiers")
    ident = text(get(p, "TransactionId"), 256)
    if ident is None and isinstance(related, list) and related and isinstance(related[0], dict):
        name, value = (
            text(get(related[0], "RelatedIdentifierName"), 64),
            text(get(related[0], "RelatedIdentifierValue"), 128),
        )
        ident = f"{name}:{value}" if name and value else None
    part: Part = {
        "action": "funds.transaction_posted",
        "site": _site(raw_site),
        "resource": {"type": "transaction", "id": ident or "?"},
        "origin": origin,
    }
    if amount is not None and currency is not None:
        part["amount"] = {"value": amount, "currency": currency}
    return [part]


def _processing(kind: str) -> Any:
    def read(n: Notification) -> list[Part]:
        p = n.payload
        ident = text(get(p, f"{kind}Id"), 256)
        origin = {
            k: v
            for k, v in (
                (f"{kind}_id", ident),
                ("processing_status", text(get(p, "processingStatus"), 32)),
                (
                    f"{kind}_document_id",
                    text(get(p, "reportDocumentId", "resultFeedDocumentId"), 256),
                ),
            )
            if v
        }
        type_ = text(get(p, f"{kind}Type"), 128) or "?"
        return [
            {
                "action": f"{kind}.processing_finished",
                "resource": {"type": kind, "id": type_},
                "origin": origin,
            }
        ]

    return read


def read_other(n: Notification) -> list[Part]:
    raw_site = find(n.payload, "MarketplaceId", depth=2)
    return [
        {
            "action": "notification.received",
            "site": _site(raw_site),
            "resource": {"type": "notification", "id": n.type},
        }
    ]


READERS = {
    "LISTINGS_ITEM_STATUS_CHANGE": _status,
    "LISTINGS_ITEM_ISSUES_CHANGE": _issues,
    "LISTINGS_ITEM_MFN_QUANTITY_CHANGE": _quantity,
    "ANY_OFFER_CHANGED": _any_offer,
    "PRICING_HEALTH": _pricing_health,
    "ACCOUNT_STATUS_CHANGED": _account_status,
    "TRANSACTION_UPDATE": _transaction,
    "REPORT_PROCESSING_FINISHED": _processing("report"),
    "FEED_PROCESSING_FINISHED": _processing("feed"),
}
