"""The gateway tests' sandbox upstream with a memory: listings and payment methods that change.

tests/gateway/sandbox.py answers from static sandbox definitions, so nothing it is told changes
what it answers next. Reconciliation needs an Amazon whose state moves: this subclass keeps
listings (price, quantity, status, attributes, last update) and payment methods, applies the
listings writes it receives (patch, put, delete) and answers getListingsItem,
searchListingsItems (with lastUpdatedAfter), getPaymentMethods, listPayouts and
listTransactions from that state, in the models' shapes. Everything else falls through to the
static definitions. Like Amazon, it can send notifications about the changes to an SQS queue
(`notify`), and the test can change its state directly (`seller_central_*`): the path around
the gateway.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from pipeline.event import format_ms
from pipeline.marketplaces import marketplace_id, site_code
from sources.gateway.prices import our_price
from tests.gateway.sandbox import Sandbox

LISTING = "/listings/2021-08-01/items/"


@dataclass
class Listing:
    sku: str
    site: str
    asin: str
    price: float
    quantity: int
    status: list[str] = field(default_factory=lambda: ["BUYABLE", "DISCOVERABLE"])
    attributes: dict[str, Any] = field(default_factory=dict)
    updated_ms: int = 0
    created_ms: int = 0


class StatefulSandbox(Sandbox):
    def __init__(self, *args: Any, seller_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seller_id = seller_id
        self.listings: dict[tuple[str, str], Listing] = {}
        self.payment_methods: dict[str, list[dict[str, Any]]] = {}
        self.payouts: dict[str, list[dict[str, Any]]] = {}
        self.transactions: list[dict[str, Any]] = []
        #: called with each notification Amazon would send (a test wires it to a queue)
        self.notify: Any = None

    # -- the state, changed by the test (Seller Central: around the gateway) ----------------------

    def add_listing(self, sku: str, site: str, asin: str, price: float, quantity: int) -> Listing:
        now = _now()
        listing = Listing(
            sku,
            site,
            asin,
            price,
            quantity,
            attributes={
                "item_name": [{"value": f"{sku} item", "marketplace_id": marketplace_id(site)}]
            },
            updated_ms=now,
            created_ms=now,
        )
        self.listings[sku, site] = listing
        return listing

    def seller_central_price(self, sku: str, site: str, price: float) -> None:
        listing = self.listings[sku, site]
        listing.price = price
        self._touched(listing, price_changed=True)

    def seller_central_bank_account(self, site: str, tail: str) -> None:
        methods = self.payment_methods.setdefault(site, [])
        for method in methods:
            method.pop("assignmentType", None)
        methods.append(
            {
                "accountHolderName": "Seller GmbH",
                "paymentMethodId": f"0h_TU_CUS_{uuid.uuid4()}",
                "paymentMethodType": "BANK_ACCOUNT",
                "tail": tail,
                "countryCode": site,
                "assignmentType": "DEFAULT_DEPOSIT_METHOD",
            }
        )

    # -- the API -------------------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.Response:
        path = request.path
        token = request.headers.get("x-amz-access-token", "")
        if token in self.tokens:
            if path.startswith(LISTING):
                parts = path[len(LISTING) :].split("/")
                sites = [
                    site_code(m)
                    for m in request.query.get("marketplaceIds", "").split(",")
                    if site_code(m)
                ]
                if len(parts) == 2 and sites:
                    answer = await self._listing(request, parts[1], sites[0])
                    if answer is not None:
                        return self._log(request, await request.read(), answer)
                if len(parts) == 1 and request.method == "GET" and sites:
                    return self._log(
                        request, b"", self._search(sites[0], request.query.get("lastUpdatedAfter"))
                    )
            if path == "/finances/transfers/2024-06-01/paymentMethods" and request.method == "GET":
                site = site_code(request.query.get("marketplaceId"))
                return self._log(
                    request,
                    b"",
                    _json(200, {"paymentMethods": self.payment_methods.get(site or "", [])}),
                )
            if path == "/finances/transfers/2024-06-01/payouts" and request.method == "GET":
                site = site_code(request.query.get("marketplaceIds", "").split(",")[0])
                return self._log(
                    request, b"", _json(200, {"payouts": self.payouts.get(site or "", [])})
                )
            if path == "/finances/2024-06-19/transactions" and request.method == "GET":
                return self._log(
                    request, b"", _json(200, {"payload": {"transactions": self.transactions}})
                )
        return await super().api(request)

    def _log(self, request: web.Request, body: bytes, response: web.Response) -> web.Response:
        from tests.gateway.sandbox import Logged

        parsed = orjson.loads(body) if body else None
        self.requests.append(
            Logged(
                request.method,
                request.path,
                {k: request.query.getall(k) for k in request.query},
                parsed,
                request.headers.get("x-amz-access-token", ""),
            )
        )
        return response

    async def _listing(self, request: web.Request, sku: str, site: str) -> web.Response | None:
        listing = self.listings.get((sku, site))
        if request.method == "GET":
            if listing is None:
                return _json(
                    404,
                    {
                        "errors": [
                            {
                                "code": "NOT_FOUND",
                                "message": f"SKU '{sku}' not found in marketplace {marketplace_id(site)}",
                            }
                        ]
                    },
                )
            return _json(200, self._item(listing))
        if request.query.get("mode") == "VALIDATION_PREVIEW":
            return None
        body = orjson.loads(await request.read() or b"{}")
        if request.method == "DELETE" and listing is not None:
            del self.listings[sku, site]
            listing.status = ["DELETED"]
            self._touched(listing, deleted=True)
        elif request.method == "PATCH" and listing is not None:
            changed_price = False
            for patch in body.get("patches", []):
                attribute = str(patch.get("path", "")).split("/")[-1]
                if attribute == "purchasable_offer":
                    price = our_price(patch.get("value"), site)
                    if price is not None:
                        listing.price = float(price)
                        changed_price = True
                elif attribute == "fulfillment_availability":
                    for value in patch.get("value") or []:
                        if isinstance(value, dict) and isinstance(value.get("quantity"), int):
                            listing.quantity = value["quantity"]
                else:
                    listing.attributes[attribute] = patch.get("value")
            self._touched(listing, price_changed=changed_price)
        else:
            return None
        return _json(
            200, {"sku": sku, "status": "ACCEPTED", "submissionId": uuid.uuid4().hex, "issues": []}
        )

    def _item(self, listing: Listing) -> dict[str, Any]:
        mid = marketplace_id(listing.site)
        attributes = dict(listing.attributes)
        attributes["purchasable_offer"] = [
            {
                "marketplace_id": mid,
                "currency": "EUR",
                "audience": "ALL",
                "our_price": [{"schedule": [{"value_with_tax": listing.price}]}],
            }
        ]
        attributes["fulfillment_availability"] = [
            {"fulfillment_channel_code": "DEFAULT", "quantity": listing.quantity}
        ]
        return {
            "sku": listing.sku,
            "summaries": [
                {
                    "marketplaceId": mid,
                    "asin": listing.asin,
                    "productType": "PRODUCT",
                    "status": listing.status,
                    "itemName": f"{listing.sku} item",
                    "createdDate": _iso(listing.created_ms),
                    "lastUpdatedDate": _iso(listing.updated_ms),
                }
            ],
            "attributes": attributes,
            "offers": [
                {
                    "marketplaceId": mid,
                    "offerType": "B2C",
                    "price": {"currencyCode": "EUR", "amount": str(listing.price)},
                }
            ],
            "fulfillmentAvailability": [
                {"fulfillmentChannelCode": "DEFAULT", "quantity": listing.quantity}
            ],
        }

    def _search(self, site: str, after: str | None) -> web.Response:
        from pipeline.event import timestamp_ms

        since = timestamp_ms(after, "lastUpdatedAfter") if after else None
        items = [
            {"sku": listing.sku, "summaries": self._item(listing)["summaries"]}
            for listing in self.listings.values()
            if listing.site == site and (since is None or listing.updated_ms > since)
        ]
        return _json(200, {"numberOfResults": len(items), "items": items})

    def _touched(
        self, listing: Listing, price_changed: bool = False, deleted: bool = False
    ) -> None:
        listing.updated_ms = max(_now(), listing.updated_ms + 1)
        if self.notify is None:
            return
        when = _iso(listing.updated_ms)
        mid = marketplace_id(listing.site)
        if deleted:
            self.notify(
                _notification(
                    "LISTINGS_ITEM_STATUS_CHANGE",
                    when,
                    {
                        "SellerId": self.seller_id,
                        "MarketplaceId": mid,
                        "Asin": listing.asin,
                        "Sku": listing.sku,
                        "Status": ["DELETED"],
                    },
                )
            )
        if price_changed:
            self.notify(
                _notification(
                    "ANY_OFFER_CHANGED",
                    when,
                    {
                        "AnyOfferChangedNotification": {
                            "SellerId": self.seller_id,
                            "OfferChangeTrigger": {
                                "MarketplaceId": mid,
                                "ASIN": listing.asin,
                                "ItemCondition": "new",
                                "TimeOfOfferChange": when,
                                "OfferChangeType": "Internal",
                            },
                            "Offers": [
                                {
                                    "SellerId": self.seller_id,
                                    "SubCondition": "new",
                                    "ListingPrice": {
                                        "Amount": listing.price,
                                        "CurrencyCode": "EUR",
                                    },
                                    "IsFulfilledByAmazon": False,
                                }
                            ],
                        }
                    },
                )
            )


def _notification(kind: str, when: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "NotificationVersion": "1.0",
        "NotificationType": kind,
        "PayloadVersion": "1.0",
        "EventTime": when,
        "Payload": payload,
        "NotificationMetadata": {
            "ApplicationId": "amzn1.sellerapps.app.pw-test",
            "SubscriptionId": "sub-test",
            "PublishTime": when,
            "NotificationId": str(uuid.uuid4()),
        },
    }


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _now() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    return format_ms(ms)
