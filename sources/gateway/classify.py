"""What an SP-API call does, in PartnerWatch's vocabulary (the mapping of ../shared/AMAZON.md).

`plan(call, memory)` names the operation and returns one `Planned` action per event the call
becomes: one per call, except a `JSON_LISTINGS_FEED`, whose every message is an event of its
own. Pure: what the gateway remembers of earlier answers (report types, last seen prices, the
feed documents uploaded through it) comes in through `Memory`.

- Listings put / patch / delete: by attribute path. `purchasable_offer` and `list_price` are
  price changes (`listing.price_change`, `changes: [{field: "price", old, new}]` when `our_price`
  is given), `fulfillment_availability` an inventory update (`quantity`), anything else a
  listing update; `deleteListingsItem` is `listing.delete`. One call is one event: a patch
  that touches a price and a title is a price change whose `changes` name both.
  `mode=VALIDATION_PREVIEW` changes nothing: `data.read`.
- Feeds: `createFeed` of a `JSON_LISTINGS_FEED` expands every message (PATCH, UPDATE,
  PARTIAL_UPDATE, DELETE) as the listings calls above, when the gateway saw the document's
  upload (it hands out its own upload URL); other feed types are `data.write`.
- Reports: `createReport` is `report.request`, `createReportSchedule` is `report.schedule`
  (standing access), `getReportDocument` is `report.download`; `resource.id` is the report type
  (for a download, remembered from `getReport` / `createReport`), `origin.sensitivity` says
  `restricted` (buyer personal data, needs a Restricted Data Token), `bulk` (a business-wide
  export) or `normal`.
- Permission-like calls: `createRestrictedDataToken` is `permission.data_token`; creating or
  deleting notification destinations and subscriptions is `permission.notification_change`;
  `rotateApplicationClientSecret` is `auth.credentials_create`.
- Money: `initiatePayout` and Seller Wallet transactions are `funds.disbursement_request`
  (with the amount when the request names one), transfer schedules
  `funds.transfer_schedule_change`.
- Everything else that only reads is `data.read`; an unknown call that is not a GET is
  `data.write` (its method and path are in `origin`).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import orjson

from pipeline.marketplaces import site_code

#: Report types whose documents hold buyer personal data (getReportDocument needs an RDT).
RESTRICTED_REPORTS: frozenset[str] = frozenset(
    {
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_INVOICING",
        "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_TAX",
        "GET_FLAT_FILE_ACTIONABLE_ORDER_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_INVOICING",
        "GET_FLAT_FILE_ORDER_REPORT_DATA_TAX",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_SHIPPING",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_INVOICING",
        "GET_FLAT_FILE_ORDERS_RECONCILIATION_DATA_TAX",
        "GET_ORDER_REPORT_DATA_SHIPPING",
        "GET_ORDER_REPORT_DATA_INVOICING",
        "GET_ORDER_REPORT_DATA_TAX",
        "GET_EASYSHIP_DOCUMENTS",
        "GET_GST_MTR_B2B_CUSTOM",
        "GET_VAT_TRANSACTION_DATA",
        "SC_VAT_TAX_REPORT",
    }
)
#: Not restricted, but a business-wide export (all orders, all listings, all inventory).
BULK_REPORT_PREFIXES: tuple[str, ...] = (
    "GET_FLAT_FILE_ALL_ORDERS_DATA_",
    "GET_XML_ALL_ORDERS_DATA_",
    "GET_MERCHANT_LISTINGS_",
    "GET_FBA_MYI_",
    "GET_FLAT_FILE_OPEN_LISTINGS_DATA",
    "GET_V2_SETTLEMENT_REPORT_DATA_",
    "GET_DATE_RANGE_FINANCIAL_TRANSACTION_DATA",
)

PRICE_ATTRIBUTES = frozenset({"purchasable_offer", "list_price"})
QUANTITY_ATTRIBUTES = frozenset({"fulfillment_availability"})
#: Grantless operations (the seller app's client-credentials token, with this scope).
NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"
MAX_FEED_MESSAGES = 10_000
_SUMMARY_CHARS = 256


def report_sensitivity(report_type: str | None) -> str:
    if report_type in RESTRICTED_REPORTS:
        return "restricted"
    if report_type and report_type.startswith(BULK_REPORT_PREFIXES):
        return "bulk"
    return "normal" if report_type else "unknown"


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


# -- routes -------------------------------------------------------------------------------------

_Handler = Callable[[Call, dict[str, str], Memory], list[Planned]]
_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = []


def _route(method: str, pattern: str, name: str, scope: str = "") -> None:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    _ROUTES.append((method, re.compile(regex + r"/?"), name, scope))


_LISTING = "/listings/2021-08-01/items/{sellerId}/{sku}"
for _m, _n in (("GET", "getListingsItem"), ("PATCH", "patchListingsItem"), ("PUT", "putListingsItem"), ("DELETE", "deleteListingsItem")):
    _route(_m, _LISTING, _n)
_route("GET", "/listings/2021-08-01/items/{sellerId}", "searchListingsItems")
_route("POST", "/feeds/2021-06-30/documents", "createFeedDocument")
_route("GET", "/feeds/2021-06-30/documents/{feedDocumentId}", "getFeedDocument")
_route("POST", "/feeds/2021-06-30/feeds", "createFeed")
_route("GET", "/feeds/2021-06-30/feeds", "getFeeds")
_route("GET", "/feeds/2021-06-30/feeds/{feedId}", "getFeed")
_route("DELETE", "/feeds/2021-06-30/feeds/{feedId}", "cancelFeed")
_route("POST", "/reports/2021-06-30/reports", "createReport")
_route("GET", "/reports/2021-06-30/reports", "getReports")
_route("GET", "/reports/2021-06-30/reports/{reportId}", "getReport")
_route("DELETE", "/reports/2021-06-30/reports/{reportId}", "cancelReport")
_route("POST", "/reports/2021-06-30/schedules", "createReportSchedule")
_route("GET", "/reports/2021-06-30/schedules", "getReportSchedules")
_route("GET", "/reports/2021-06-30/schedules/{reportScheduleId}", "getReportSchedule")
_route("DELETE", "/reports/2021-06-30/schedules/{reportScheduleId}", "cancelReportSchedule")
_route("GET", "/reports/2021-06-30/documents/{reportDocumentId}", "getReportDocument")
_route("POST", "/tokens/2021-03-01/restrictedDataToken", "createRestrictedDataToken")
_route("GET", "/notifications/v1/destinations", "getDestinations", NOTIFICATIONS_SCOPE)
_route("POST", "/notifications/v1/destinations", "createDestination", NOTIFICATIONS_SCOPE)
_route("GET", "/notifications/v1/destinations/{destinationId}", "getDestination", NOTIFICATIONS_SCOPE)
_route("DELETE", "/notifications/v1/destinations/{destinationId}", "deleteDestination", NOTIFICATIONS_SCOPE)
_route("GET", "/notifications/v1/subscriptions", "getSubscriptions")
_route("POST", "/notifications/v1/subscriptions/{notificationType}/testNotification", "sendTestNotification")
_route("GET", "/notifications/v1/subscriptions/{notificationType}", "getSubscription")
_route("POST", "/notifications/v1/subscriptions/{notificationType}", "createSubscription")
_route("GET", "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}", "getSubscriptionById", NOTIFICATIONS_SCOPE)
_route("DELETE", "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}", "deleteSubscriptionById", NOTIFICATIONS_SCOPE)
_route("POST", "/applications/2023-11-30/clientSecret", "rotateApplicationClientSecret", ROTATION_SCOPE)
_route("POST", "/finances/transfers/2024-06-01/payouts", "initiatePayout")
_route("POST", "/finances/transfers/wallet/2024-03-01/transactions", "createTransaction")
_route("POST", "/finances/transfers/wallet/2024-03-01/transferSchedules", "createTransferSchedule")
_route("PUT", "/finances/transfers/wallet/2024-03-01/transferSchedules", "updateTransferSchedule")
_route("DELETE", "/finances/transfers/wallet/2024-03-01/transferSchedules/{transferScheduleId}", "deleteScheduleTransaction")
#: Reads with their operation names (any other GET is named by its path).
_READS = (
    ("/sellers/v1/marketplaceParticipations", "getMarketplaceParticipations"),
    ("/sellers/v1/account", "getAccount"),
    ("/finances/transfers/2024-06-01/payouts", "listPayouts"),
    ("/finances/transfers/2024-06-01/payouts/expected", "listExpectedPayouts"),
    ("/finances/transfers/2024-06-01/paymentMethods", "getPaymentMethods"),
    ("/finances/v0/financialEventGroups", "listFinancialEventGroups"),
    ("/finances/v0/financialEventGroups/{eventGroupId}/financialEvents", "listFinancialEventsByGroupId"),
    ("/finances/v0/orders/{orderId}/financialEvents", "listFinancialEventsByOrderId"),
    ("/finances/v0/financialEvents", "listFinancialEvents"),
    ("/finances/2024-06-19/transactions", "listTransactions"),
    ("/finances/2024-06-19/balances", "listBalances"),
    ("/finances/2024-06-19/summary", "listSummary"),
    ("/finances/transfers/wallet/2024-03-01/accounts", "listAccounts"),
    ("/finances/transfers/wallet/2024-03-01/accounts/{accountId}", "getWalletAccount"),
    ("/finances/transfers/wallet/2024-03-01/accounts/{accountId}/balance", "listAccountBalances"),
    ("/finances/transfers/wallet/2024-03-01/transferPreview", "getTransferPreview"),
    ("/finances/transfers/wallet/2024-03-01/transactions", "listAccountTransactions"),
    ("/finances/transfers/wallet/2024-03-01/transactions/{transactionId}", "getTransaction"),
    ("/finances/transfers/wallet/2024-03-01/transferSchedules", "listTransferSchedules"),
    ("/finances/transfers/wallet/2024-03-01/transferSchedules/{transferScheduleId}", "getTransferSchedule"),
)
for _path, _name in _READS:
    _route("GET", _path, _name)


def operation_of(method: str, path: str) -> tuple[str, dict[str, str], str]:
    """(operation name, path parameters, grantless scope); `GET /unknown` is named by its path."""
    for m, regex, name, scope in _ROUTES:
        if m == method:
            found = regex.fullmatch(path)
            if found:
                return name, found.groupdict(), scope
    return "", {}, ""


def plan(call: Call, memory: Memory) -> Operation:
    name, params, scope = operation_of(call.method, call.path)
    op = Operation(name or f"{call.method} {call.path[:100]}", scope, params)
    handler = _HANDLERS.get(name)
    if handler is not None:
        op.planned = handler(call, params, memory)
    elif call.method in ("GET", "HEAD", "OPTIONS"):
        op.planned = [_read(call, op.name)]
    else:
        op.planned = [Planned("data.write", op.name, site_codes(call.marketplace_ids()))]
    for planned in op.planned:
        planned.operation = op.name
        if call.param("mode") == "VALIDATION_PREVIEW":
            planned.origin["mode"] = "VALIDATION_PREVIEW"
    return op


# -- helpers ------------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def site_codes(ids: list[str]) -> list[str]:
    return [site_code(i) or "?" for i in ids]


def _read(call: Call, operation: str, resource: dict[str, str] | None = None) -> Planned:
    return Planned("data.read", operation, site_codes(call.marketplace_ids()), resource)


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


def _summary(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else value
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


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


def _quantity(values: Any) -> Any:
    if isinstance(values, list):
        for item in values:
            if isinstance(item, dict) and "quantity" in item:
                quantity = item["quantity"]
                if isinstance(quantity, int) and not isinstance(quantity, bool) and abs(quantity) < 2**53:
                    return quantity
    return None


def listing_change(
    kind: str, sku: str, site: str | None, edits: list[tuple[str, str, Any]], memory: Memory
) -> Planned:
    """One listings write: `kind` put|patch|delete, `edits` (op, attribute, value) -> Planned."""
    resource = {"type": "listing", "id": sku}
    sites = [site] if site else []
    if kind == "delete":
        return Planned("listing.delete", "", sites, resource, sku=sku)
    changes: list[dict[str, Any]] = []
    action = "listing.update"
    old = new = None
    for op, attribute, value in edits:
        if attribute in PRICE_ATTRIBUTES and op != "delete":
            if attribute == "purchasable_offer":
                price = our_price(value, site)
                if price is not None:
                    old = memory.price(sku, site) if site else None
                    new = price
                    changes.insert(0, {"field": "price", "old": old, "new": new})
                    action = "listing.price_change"
                    continue
            elif action != "listing.price_change":
                action = "listing.price_change"
            changes.append({"field": attribute, "old": None, "new": _summary(value)})
        elif attribute in QUANTITY_ATTRIBUTES and op != "delete":
            if action == "listing.update":
                action = "inventory.update"
            changes.append({"field": "quantity", "old": None, "new": _quantity(value)})
        else:
            changes.append({"field": attribute[:128] or "?", "old": None, "new": None if op == "delete" else _summary(value)})
    return Planned(action, "", sites, resource, changes[:1000], sku=sku, old_price=old, new_price=new)


def _patch_edits(patches: Any) -> list[tuple[str, str, Any]]:
    edits = []
    if isinstance(patches, list):
        for patch in patches:
            if not isinstance(patch, dict):
                continue
            path = patch.get("path")
            attribute = path.split("/")[2] if isinstance(path, str) and path.startswith("/attributes/") and path.count("/") >= 2 else str(path)[:128]
            edits.append((str(patch.get("op", "")), attribute, patch.get("value")))
    return edits


def _put_edits(attributes: Any) -> list[tuple[str, str, Any]]:
    if not isinstance(attributes, dict):
        return []
    return [("replace", str(name), value) for name, value in attributes.items()]


# -- handlers -----------------------------------------------------------------------------------


def _listing(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    sku = params["sku"]
    sites = site_codes(call.marketplace_ids())
    site = sites[0] if sites else None
    if call.method == "GET":
        return [_read(call, "", {"type": "listing", "id": sku})]
    if call.param("mode") == "VALIDATION_PREVIEW":
        return [_read(call, "", {"type": "listing", "id": sku})]
    body = call.body if isinstance(call.body, dict) else {}
    if call.method == "DELETE":
        planned = listing_change("delete", sku, site, [], memory)
    elif call.method == "PATCH":
        planned = listing_change("patch", sku, site, _patch_edits(body.get("patches")), memory)
    else:
        planned = listing_change("put", sku, site, _put_edits(body.get("attributes")), memory)
    planned.marketplaces = sites
    return [planned]


def _feed(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    feed_type = str(body.get("feedType", ""))[:128]
    ids = _list(body.get("marketplaceIds"))
    sites = site_codes([str(i) for i in ids])
    document_id = str(body.get("inputFeedDocumentId", ""))[:256]
    origin = {"feed_type": feed_type, "feed_document_id": document_id}
    if feed_type != "JSON_LISTINGS_FEED":
        return [Planned("data.write", "", sites, {"type": "feed", "id": feed_type or "?"}, origin=origin)]
    content = memory.feed_document(document_id)
    messages = _feed_messages(content) if content is not None else None
    if messages is None:
        why = "not uploaded through the gateway" if content is None else "not a JSON listings feed"
        unseen = Planned("listing.update", "", sites, {"type": "feed", "id": document_id or "?"})
        unseen.origin = {**origin, "content": why}
        return [unseen]
    site = sites[0] if sites else None
    out = []
    for index, message in enumerate(messages[:MAX_FEED_MESSAGES]):
        sku = str(message.get("sku", ""))[:1024] or "?"
        operation = str(message.get("operationType", "")).upper()
        message_site = _message_site(message) or site
        if operation == "DELETE":
            planned = listing_change("delete", sku, message_site, [], memory)
        elif operation == "PATCH":
            planned = listing_change("patch", sku, message_site, _patch_edits(message.get("patches")), memory)
        else:  # UPDATE, PARTIAL_UPDATE
            planned = listing_change("put", sku, message_site, _put_edits(message.get("attributes")), memory)
        message_id = message.get("messageId", index + 1)
        planned.marketplaces = [message_site] if message_site else sites
        planned.origin = {**origin, "message_id": message_id if isinstance(message_id, int) else str(message_id)[:64], "operation_type": operation[:32]}
        planned.suffix = f".m{index + 1}"
        out.append(planned)
    if len(messages) > MAX_FEED_MESSAGES:
        out[-1].origin["messages_not_expanded"] = len(messages) - MAX_FEED_MESSAGES
    return out


def _message_site(message: dict[str, Any]) -> str | None:
    for source in (message.get("attributes"), *(p.get("value") for p in message.get("patches") or () if isinstance(p, dict))):
        values = source.get("purchasable_offer") if isinstance(source, dict) else source
        if isinstance(values, list):
            for value in values:
                if isinstance(value, dict) and site_code(value.get("marketplace_id")):
                    return site_code(value.get("marketplace_id"))
    return None


def _feed_messages(content: bytes) -> list[dict[str, Any]] | None:
    if content[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError):
            return None
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list):
        return None
    return [m for m in messages if isinstance(m, dict)]


def _report_request(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    report_type = str(body.get("reportType", ""))[:128] or "?"
    ids = _list(body.get("marketplaceIds"))
    schedule = call.path.rstrip("/").endswith("/schedules")
    planned = Planned(
        "report.schedule" if schedule else "report.request", "", site_codes([str(i) for i in ids]),
        {"type": "report", "id": report_type},
    )
    planned.origin["sensitivity"] = report_sensitivity(report_type)
    if schedule:
        planned.origin["period"] = str(body.get("period", ""))[:32]
    return [planned]


def _report_download(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    document_id = params["reportDocumentId"]
    report_type = memory.report_type(document_id)
    planned = Planned("report.download", "", [], {"type": "report", "id": report_type or "?"})
    planned.origin.update(sensitivity=report_sensitivity(report_type), report_document_id=document_id[:256])
    if report_type is None:
        planned.origin["report_type"] = "unknown: getReport was not called through the gateway"
    return [planned]


def _data_token(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    resources = body.get("restrictedResources")
    paths = []
    if isinstance(resources, list):
        for item in resources:
            if isinstance(item, dict):
                paths.append(f"{item.get('method', '')} {item.get('path', '')}"[:200])
    planned = Planned("permission.data_token", "", [], {"type": "restricted_data_token", "id": _summary(paths)})
    if body.get("targetApplication"):
        planned.origin["target_application"] = str(body["targetApplication"])[:128]
    return [planned]


def _notification(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    ident = params.get("notificationType") or params.get("destinationId") or "destination"
    planned = Planned("permission.notification_change", "", [], {"type": "notification", "id": ident[:256]})
    body = call.body if isinstance(call.body, dict) else {}
    if isinstance(body.get("destinationId"), str):
        planned.origin["destination_id"] = body["destinationId"][:128]
    resource = body.get("resourceSpecification")
    if isinstance(resource, dict):
        planned.origin["destination"] = _summary(resource)
    return [planned]


def _rotation(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    return [Planned("auth.credentials_create", "", [], {"type": "application", "id": "client_secret"})]


def _payout(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    site = site_code(body.get("marketplaceId"))
    planned = Planned("funds.disbursement_request", "", [site] if site else [], {"type": "payout", "id": str(body.get("accountType", "?"))[:128]})
    return [planned]


def _wallet(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    sites = site_codes(call.marketplace_ids())
    if call.path.rstrip("/").endswith("/transactions"):
        planned = Planned("funds.disbursement_request", "", sites, {"type": "wallet_transaction", "id": str(body.get("sourceAccountId", "?"))[:128]})
        amount = body.get("sourceAmount")
        if isinstance(amount, dict):
            value = decimal_text(amount.get("currencyAmount"))
            currency = amount.get("currencyCode")
            if value is not None and isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency):
                planned.amount = {"value": value, "currency": currency}
        return [planned]
    ident = params.get("transferScheduleId") or str(body.get("transferScheduleId", "new"))
    return [Planned("funds.transfer_schedule_change", "", sites, {"type": "transfer_schedule", "id": ident[:128]})]


def _read_handler(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    ident = next(iter(params.values()), None)
    return [_read(call, "", {"type": "sp-api", "id": ident[:256]} if ident else None)]


_HANDLERS: dict[str, _Handler] = {
    "getListingsItem": _listing,
    "patchListingsItem": _listing,
    "putListingsItem": _listing,
    "deleteListingsItem": _listing,
    "createFeed": _feed,
    "createReport": _report_request,
    "createReportSchedule": _report_request,
    "getReportDocument": _report_download,
    "createRestrictedDataToken": _data_token,
    "createDestination": _notification,
    "deleteDestination": _notification,
    "createSubscription": _notification,
    "deleteSubscriptionById": _notification,
    "rotateApplicationClientSecret": _rotation,
    "initiatePayout": _payout,
    "createTransaction": _wallet,
    "createTransferSchedule": _wallet,
    "updateTransferSchedule": _wallet,
    "deleteScheduleTransaction": _wallet,
}
for _name in (
    "searchListingsItems", "createFeedDocument", "getFeedDocument", "getFeeds", "getFeed",
    "cancelFeed", "getReports", "getReport", "cancelReport", "getReportSchedules",
    "getReportSchedule", "cancelReportSchedule", "getDestinations", "getDestination",
    "getSubscriptions", "getSubscription", "getSubscriptionById", "sendTestNotification",
    *(name for _, name in _READS),
):
    _HANDLERS[_name] = _read_handler


# -- what the answer says -----------------------------------------------------------------------


def submission_id(operation: str, response: Any) -> str | None:
    """The id Amazon gave the change (listings submissionId, feedId, reportId, payout...)."""
    if not isinstance(response, dict):
        return None
    for key in ("submissionId", "feedId", "reportId", "reportScheduleId", "payoutReferenceId", "subscriptionId", "destinationId"):
        value = response.get(key)
        if isinstance(value, str):
            return value[:256]
    payload = response.get("payload")
    if isinstance(payload, dict):
        return submission_id(operation, payload)
    transaction = response.get("transaction")
    if isinstance(transaction, dict) and isinstance(transaction.get("transactionId"), str):
        return str(transaction["transactionId"])[:256]
    return None


def failed(operation: str, status: int, response: Any) -> bool:
    """The call did not do what it asked: an HTTP error, or listings' `status: INVALID`."""
    if status >= 400:
        return True
    return isinstance(response, dict) and response.get("status") == "INVALID"
