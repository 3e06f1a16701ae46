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

import re
from collections.abc import Callable
from typing import Any

from pipeline.marketplaces import site_code
from sources.gateway.calls import Call, Memory, Operation, Planned, site_codes, summary
from sources.gateway.feeds import plan_feed
from sources.gateway.listing_changes import listing_change, patch_edits, put_edits
from sources.gateway.operations import READS, operation_of
from sources.gateway.prices import decimal_text

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


def report_sensitivity(report_type: str | None) -> str:
    if report_type in RESTRICTED_REPORTS:
        return "restricted"
    if report_type and report_type.startswith(BULK_REPORT_PREFIXES):
        return "bulk"
    return "normal" if report_type else "unknown"


_Handler = Callable[[Call, dict[str, str], Memory], list[Planned]]


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


def _read(call: Call, operation: str, resource: dict[str, str] | None = None) -> Planned:
    return Planned("data.read", operation, site_codes(call.marketplace_ids()), resource)


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
        planned = listing_change("patch", sku, site, patch_edits(body.get("patches")), memory)
    else:
        planned = listing_change("put", sku, site, put_edits(body.get("attributes")), memory)
    planned.marketplaces = sites
    return [planned]


def _report_request(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    report_type = str(body.get("reportType", ""))[:128] or "?"
    ids = _list(body.get("marketplaceIds"))
    schedule = call.path.rstrip("/").endswith("/schedules")
    planned = Planned(
        "report.schedule" if schedule else "report.request",
        "",
        site_codes([str(i) for i in ids]),
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
    planned.origin.update(
        sensitivity=report_sensitivity(report_type), report_document_id=document_id[:256]
    )
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
    planned = Planned(
        "permission.data_token", "", [], {"type": "restricted_data_token", "id": summary(paths)}
    )
    if body.get("targetApplication"):
        planned.origin["target_application"] = str(body["targetApplication"])[:128]
    return [planned]


def _notification(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    ident = params.get("notificationType") or params.get("destinationId") or "destination"
    planned = Planned(
        "permission.notification_change", "", [], {"type": "notification", "id": ident[:256]}
    )
    body = call.body if isinstance(call.body, dict) else {}
    if isinstance(body.get("destinationId"), str):
        planned.origin["destination_id"] = body["destinationId"][:128]
    resource = body.get("resourceSpecification")
    if isinstance(resource, dict):
        planned.origin["destination"] = summary(resource)
    return [planned]


def _rotation(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    return [
        Planned("auth.credentials_create", "", [], {"type": "application", "id": "client_secret"})
    ]


def _payout(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    site = site_code(body.get("marketplaceId"))
    planned = Planned(
        "funds.disbursement_request",
        "",
        [site] if site else [],
        {"type": "payout", "id": str(body.get("accountType", "?"))[:128]},
    )
    return [planned]


def _wallet(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    sites = site_codes(call.marketplace_ids())
    if call.path.rstrip("/").endswith("/transactions"):
        planned = Planned(
            "funds.disbursement_request",
            "",
            sites,
            {"type": "wallet_transaction", "id": str(body.get("sourceAccountId", "?"))[:128]},
        )
        amount = body.get("sourceAmount")
        if isinstance(amount, dict):
            value = decimal_text(amount.get("currencyAmount"))
            currency = amount.get("currencyCode")
            if (
                value is not None
                and isinstance(currency, str)
                and re.fullmatch(r"[A-Z]{3}", currency)
            ):
                planned.amount = {"value": value, "currency": currency}
        return [planned]
    ident = params.get("transferScheduleId") or str(body.get("transferScheduleId", "new"))
    return [
        Planned(
            "funds.transfer_schedule_change",
            "",
            sites,
            {"type": "transfer_schedule", "id": ident[:128]},
        )
    ]


def _read_handler(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    ident = next(iter(params.values()), None)
    return [_read(call, "", {"type": "sp-api", "id": ident[:256]} if ident else None)]


_HANDLERS: dict[str, _Handler] = {
    "getListingsItem": _listing,
    "patchListingsItem": _listing,
    "putListingsItem": _listing,
    "deleteListingsItem": _listing,
    "createFeed": plan_feed,
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
    "searchListingsItems",
    "createFeedDocument",
    "getFeedDocument",
    "getFeeds",
    "getFeed",
    "cancelFeed",
    "getReports",
    "getReport",
    "cancelReport",
    "getReportSchedules",
    "getReportSchedule",
    "cancelReportSchedule",
    "getDestinations",
    "getDestination",
    "getSubscriptions",
    "getSubscription",
    "getSubscriptionById",
    "sendTestNotification",
    *(name for _, name in READS),
):
    _HANDLERS[_name] = _read_handler


# -- what the answer says -----------------------------------------------------------------------


def submission_id(operation: str, response: Any) -> str | None:
    """The id Amazon gave the change (listings submissionId, feedId, reportId, payout...)."""
    if not isinstance(response, dict):
        return None
    for key in (
        "submissionId",
        "feedId",
        "reportId",
        "reportScheduleId",
        "payoutReferenceId",
        "subscriptionId",
        "destinationId",
    ):
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
