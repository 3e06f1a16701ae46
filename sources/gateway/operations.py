"""The SP-API operations the gateway knows by name: method and path -> operation (`operation_of`).

Grantless operations carry the LWA scope of the seller app's client-credentials token they need.
A GET the table does not name is named by its path (classify.py).
"""

from __future__ import annotations

import re

#: Grantless operations (the seller app's client-credentials token, with this scope).
NOTIFICATIONS_SCOPE = "sellingpartnerapi::notifications"
ROTATION_SCOPE = "sellingpartnerapi::client_credential:rotation"

_ROUTES: list[tuple[str, re.Pattern[str], str, str]] = []


def _route(method: str, pattern: str, name: str, scope: str = "") -> None:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    _ROUTES.append((method, re.compile(regex + r"/?"), name, scope))


_LISTING = "/listings/2021-08-01/items/{sellerId}/{sku}"
for _m, _n in (
    ("GET", "getListingsItem"),
    ("PATCH", "patchListingsItem"),
    ("PUT", "putListingsItem"),
    ("DELETE", "deleteListingsItem"),
):
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
_route(
    "GET", "/notifications/v1/destinations/{destinationId}", "getDestination", NOTIFICATIONS_SCOPE
)
_route(
    "DELETE",
    "/notifications/v1/destinations/{destinationId}",
    "deleteDestination",
    NOTIFICATIONS_SCOPE,
)
_route("GET", "/notifications/v1/subscriptions", "getSubscriptions")
_route(
    "POST",
    "/notifications/v1/subscriptions/{notificationType}/testNotification",
    "sendTestNotification",
)
_route("GET", "/notifications/v1/subscriptions/{notificationType}", "getSubscription")
_route("POST", "/notifications/v1/subscriptions/{notificationType}", "createSubscription")
_route(
    "GET",
    "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}",
    "getSubscriptionById",
    NOTIFICATIONS_SCOPE,
)
_route(
    "DELETE",
    "/notifications/v1/subscriptions/{notificationType}/{subscriptionId}",
    "deleteSubscriptionById",
    NOTIFICATIONS_SCOPE,
)
_route(
    "POST", "/applications/2023-11-30/clientSecret", "rotateApplicationClientSecret", ROTATION_SCOPE
)
_route("POST", "/finances/transfers/2024-06-01/payouts", "initiatePayout")
_route("POST", "/finances/transfers/wallet/2024-03-01/transactions", "createTransaction")
_route("POST", "/finances/transfers/wallet/2024-03-01/transferSchedules", "createTransferSchedule")
_route("PUT", "/finances/transfers/wallet/2024-03-01/transferSchedules", "updateTransferSchedule")
_route(
    "DELETE",
    "/finances/transfers/wallet/2024-03-01/transferSchedules/{transferScheduleId}",
    "deleteScheduleTransaction",
)
#: Reads with their operation names (any other GET is named by its path).
READS = (
    ("/sellers/v1/marketplaceParticipations", "getMarketplaceParticipations"),
    ("/sellers/v1/account", "getAccount"),
    ("/finances/transfers/2024-06-01/payouts", "listPayouts"),
    ("/finances/transfers/2024-06-01/payouts/expected", "listExpectedPayouts"),
    ("/finances/transfers/2024-06-01/paymentMethods", "getPaymentMethods"),
    ("/finances/v0/financialEventGroups", "listFinancialEventGroups"),
    (
        "/finances/v0/financialEventGroups/{eventGroupId}/financialEvents",
        "listFinancialEventsByGroupId",
    ),
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
    (
        "/finances/transfers/wallet/2024-03-01/transferSchedules/{transferScheduleId}",
        "getTransferSchedule",
    ),
)
for _path, _name in READS:
    _route("GET", _path, _name)


def operation_of(method: str, path: str) -> tuple[str, dict[str, str], str]:
    """(operation name, path parameters, grantless scope); `GET /unknown` is named by its path."""
    for m, regex, name, scope in _ROUTES:
        if m == method:
            found = regex.fullmatch(path)
            if found:
                return name, found.groupdict(), scope
    return "", {}, ""
