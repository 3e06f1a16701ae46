"""SP-API report types by what they hand over: buyer personal data, or the seller's business.

report_exfiltration reports any provider download of `BUYER_PII_REPORTS` (see there for how the
list was drawn); low_and_slow_exfiltration sums a provider's downloads of every `sensitive`
report type over days. Sensitive: the buyer-data reports, plus the reports that hold the seller's
business in bulk: its catalogue and prices, inventory, orders, sales and traffic, settlements and
fees, returns and the fulfilment reports (`BUSINESS_REPORT_PREFIXES`), what a competitor would
want.
"""

from __future__ import annotations

#: SP-API report types holding buyer personal data (see the module docstring).
BUYER_PII_REPORTS: frozenset[str] = frozenset(
    {
        # Restricted report types (Tokens API: getReportDocument needs an RDT).
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
        # VAT invoice data reports: buyer names and billing/shipping addresses.
        "GET_FLAT_FILE_VAT_INVOICE_DATA_REPORT",
        "GET_XML_VAT_INVOICE_DATA_REPORT",
    }
)

#: Report type prefixes of the seller's business data in bulk (Reports API report type values).
BUSINESS_REPORT_PREFIXES: tuple[str, ...] = (
    "GET_MERCHANT_LISTINGS",
    "GET_FLAT_FILE_OPEN_LISTINGS",
    "GET_FLAT_FILE_ALL_ORDERS",
    "GET_XML_ALL_ORDERS",
    "GET_FBA_",
    "GET_AFN_INVENTORY",
    "GET_RESERVED_INVENTORY",
    "GET_LEDGER_",
    "GET_SALES_AND_TRAFFIC",
    "GET_V2_SETTLEMENT",
    "GET_DATE_RANGE_FINANCIAL",
    "GET_FLAT_FILE_RETURNS",
    "GET_BRAND_ANALYTICS",
    "GET_REFERRAL_FEE",
)


def sensitive(report_type: str) -> bool:
    """The report holds buyer personal data or the seller's business data in bulk."""
    return report_type in BUYER_PII_REPORTS or report_type.startswith(BUSINESS_REPORT_PREFIXES)
