"""A small local stand-in for Amazon's SP-API, for `partnerwatch demo --amazon` (not for tests).

It plays Amazon's part of the demo: Login with Amazon for the seller's app, the listings of one
seller (get, patch, search by last update), its payment methods, payouts and transactions, and
notifications of listing changes sent to an SQS queue (ElasticMQ), as Amazon sends them. The
demo changes its state directly too (`seller_central_*`): the path around the gateway. Served
over HTTPS with a throwaway certificate authority made at start (providers' SDKs expect https).
The tests use their own upstream built from Amazon's sandbox definitions (tests/gateway).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pipeline.event import format_ms, timestamp_ms
from pipeline.marketplaces import marketplace_id, site_code

SELLER_APP = {
    "client_id": "amzn1.application-oa2-client.pw-demo-seller-app",
    "client_secret": "amzn1.oa2-cs.v1.pw-demo-seller-secret",
    "refresh_token": "Atzr|pw-demo-seller-refresh-token",
}
LISTINGS = "/listings/2021-08-01/items/"


@dataclass
class Listing:
    sku: str
    site: str
    asin: str
    price: float
    quantity: int
    updated_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, key) for 127.0.0.1, valid a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PartnerWatch demo CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


class DemoAmazon:
    def __init__(self, seller_id: str, notify: Any = None) -> None:
        self.seller_id = seller_id
        self.notify = notify
        self.tokens: set[str] = set()
        self.listings: dict[tuple[str, str], Listing] = {}
        self.payment_methods: dict[str, list[dict[str, Any]]] = {}
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- what happens at Amazon outside any API call (Seller Central) ---------------------------

    def add_listing(self, sku: str, site: str, asin: str, price: float, quantity: int) -> None:
        self.listings[sku, site] = Listing(sku, site, asin, price, quantity)

    def seller_central_price(self, sku: str, site: str, price: float) -> None:
        listing = self.listings[sku, site]
        listing.price = price
        self._changed(listing)

    def seller_central_bank_account(self, site: str, tail: str) -> None:
        methods = self.payment_methods.setdefault(site, [])
        for method in methods:
            method.pop("assignmentType", None)
        methods.append(
            {
                "paymentMethodId": f"0h_TU_CUS_{uuid.uuid4()}",
                "paymentMethodType": "BANK_ACCOUNT",
                "tail": tail,
                "countryCode": site,
                "assignmentType": "DEFAULT_DEPOSIT_METHOD",
            }
        )

    # -- serving -------------------------------------------------------------------------------

    def start(self, context: ssl.SSLContext, port: int) -> DemoAmazon:
        ready = threading.Event()
        app = web.Application()
        app.router.add_post("/auth/o2/token", self._lwa)
        app.router.add_route("*", "/{tail:.*}", self._api)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(
                web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
            )
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())

        self.base_url = f"https://127.0.0.1:{port}"
        self._thread = threading.Thread(target=run, daemon=True, name="demo-amazon")
        self._thread.start()
        ready.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _lwa(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("client_id") != SELLER_APP["client_id"]
            or form.get("client_secret") != SELLER_APP["client_secret"]
        ):
            return _json(401, {"error": "invalid_client"})
        token = f"Atza|demo-{secrets.token_hex(16)}"
        self.tokens.add(token)
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

    async def _api(self, request: web.Request) -> web.Response:
        if request.headers.get("x-amz-access-token") not in self.tokens:
            return _json(
                403,
                {
                    "errors": [
                        {
                            "code": "Unauthorized",
                            "message": "Access to requested resource is denied.",
                        }
                    ]
                },
            )
        path, query = request.path, request.query
        site = site_code(
            (query.get("marketplaceIds") or query.get("marketplaceId") or "").split(",")[0]
        )
        if path.startswith(LISTINGS) and site:
            parts = path[len(LISTINGS) :].split("/")
            if len(parts) == 1 and request.method == "GET":
                since = (
                    timestamp_ms(query["lastUpdatedAfter"], "lastUpdatedAfter")
                    if query.get("lastUpdatedAfter")
                    else None
                )
                items = [
                    {"sku": x.sku, "summaries": self._item(x)["summaries"]}
                    for x in self.listings.values()
                    if x.site == site and (since is None or x.updated_ms > since)
                ]
                return _json(200, {"numberOfResults": len(items), "items": items})
            listing = self.listings.get((parts[-1], site))
            if listing is None:
                return _json(404, {"errors": [{"code": "NOT_FOUND", "message": "SKU not found"}]})
            if request.method == "GET":
                return _json(200, self._item(listing))
            if request.method == "PATCH":
                body = orjson.loads(await request.read() or b"{}")
                for patch in body.get("patches", []):
                    if (
                        str(patch.get("path", "")).endswith("purchasable_offer")
                        and query.get("mode") != "VALIDATION_PREVIEW"
                    ):
                        for offer in patch.get("value") or []:
                            schedule = (
                                (offer.get("our_price") or [{}])[0].get("schedule") or [{}]
                            )[0]
                            if isinstance(schedule.get("value_with_tax"), (int, float)):
                                listing.price = float(schedule["value_with_tax"])
                self._changed(listing)
                return _json(
                    200,
                    {
                        "sku": listing.sku,
                        "status": "ACCEPTED",
                        "submissionId": uuid.uuid4().hex,
                        "issues": [],
                    },
                )
        if path == "/finances/transfers/2024-06-01/paymentMethods":
            return _json(200, {"paymentMethods": self.payment_methods.get(site or "", [])})
        if path == "/finances/transfers/2024-06-01/payouts":
            return _json(200, {"payouts": []})
        if path == "/finances/2024-06-19/transactions":
            return _json(200, {"payload": {"transactions": []}})
        return _json(404, {"errors": [{"code": "NotFound", "message": "not in the demo's Amazon"}]})

    def _item(self, x: Listing) -> dict[str, Any]:
        mid = marketplace_id(x.site)
        return {
            "sku": x.sku,
            "summaries": [
                {
                    "marketplaceId": mid,
                    "asin": x.asin,
                    "status": ["BUYABLE", "DISCOVERABLE"],
                    "lastUpdatedDate": format_ms(x.updated_ms),
                    "createdDate": format_ms(x.updated_ms),
                }
            ],
            "attributes": {
                "purchasable_offer": [
                    {
                        "marketplace_id": mid,
                        "currency": "EUR",
                        "audience": "ALL",
                        "our_price": [{"schedule": [{"value_with_tax": x.price}]}],
                    }
                ],
                "fulfillment_availability": [
                    {"fulfillment_channel_code": "DEFAULT", "quantity": x.quantity}
                ],
            },
            "offers": [
                {
                    "marketplaceId": mid,
                    "offerType": "B2C",
                    "price": {"currencyCode": "EUR", "amount": str(x.price)},
                }
            ],
            "fulfillmentAvailability": [
                {"fulfillmentChannelCode": "DEFAULT", "quantity": x.quantity}
            ],
        }

    def _changed(self, listing: Listing) -> None:
        listing.updated_ms = max(time.time_ns() // 1_000_000, listing.updated_ms + 1)
        if self.notify is None:
            return
        when = format_ms(listing.updated_ms)
        self.notify(
            {
                "NotificationVersion": "1.0",
                "NotificationType": "ANY_OFFER_CHANGED",
                "PayloadVersion": "1.0",
                "EventTime": when,
                "Payload": {
                    "AnyOfferChangedNotification": {
                        "SellerId": self.seller_id,
                        "OfferChangeTrigger": {
                            "MarketplaceId": marketplace_id(listing.site),
                            "ASIN": listing.asin,
                            "ItemCondition": "new",
                            "OfferChangeType": "Internal",
                        },
                        "Offers": [
                            {
                                "SellerId": self.seller_id,
                                "SubCondition": "new",
                                "ListingPrice": {"Amount": listing.price, "CurrencyCode": "EUR"},
                            }
                        ],
                    }
                },
                "NotificationMetadata": {
                    "ApplicationId": "amzn1.sellerapps.app.pw-demo",
                    "SubscriptionId": "sub-demo",
                    "PublishTime": when,
                    "NotificationId": str(uuid.uuid4()),
                },
            }
        )


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
