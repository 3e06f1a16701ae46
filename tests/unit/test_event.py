"""The ingest validator (`pipeline/event.py`), the JSON Schema and the contract agree.

The validator is the gate into the ledger; the JSON Schema is what gateway authors read. Each
valid action is accepted and normalized, each rejection reason is reachable, the two vocabularies
match, and a corpus of documents gets the same verdict from both (where the schema can say it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import event as event_mod
from pipeline.config import REPO_ROOT
from pipeline.contract import (
    ACTIONS,
    ACTOR_TYPES,
    AMOUNT_REQUIRED,
    MARKETPLACE_REQUIRED_PREFIXES,
    MARKETPLACES,
    OUTCOMES,
    needs_marketplace,
)
from pipeline.event import (
    REASONS,
    Rejected,
    canonical,
    format_ms,
    normalize,
    parse_action,
    timestamp_ms,
)
from pipeline.grant_schema import GRANT_FIELDS
from pipeline.marketplaces import ACCEPTED, MARKETPLACE_IDS

SCHEMA_PATH = REPO_ROOT / "pipeline" / "schema" / "provider_action.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())

DELETE = object()  # marks a field to remove in `variant`


# -- documents ----------------------------------------------------------------------------------


def minimal(action: str = "listing.update") -> dict[str, Any]:
    """The smallest valid ProviderAction for `action` (as a gateway would send it)."""
    doc: dict[str, Any] = {
        "event_id": f"gw-{action}-000123",
        "occurred_at": "2026-11-02T14:05:09.120+08:00",
        "account_id": "A0001SELLER",
        "actor": {"type": "provider", "provider_id": "prov-003", "principal_id": "prov-003-user-1"},
        "action": action,
    }
    if needs_marketplace(action):
        doc["marketplace"] = "DE"
    if action in AMOUNT_REQUIRED:
        doc["amount"] = {"value": "120.50", "currency": "EUR"}
    if action == "permission.grant":
        doc["actor"] = {"type": "seller", "principal_id": "A0001SELLER-owner"}
        doc["grant"] = {"grant_id": "g-1", "provider_id": "prov-003"}
    if action == "permission.revoke":
        doc["actor"] = {"type": "seller", "principal_id": "A0001SELLER-owner"}
        doc["grant"] = {"grant_id": "g-1"}
    if action == "approval.grant":
        doc["actor"] = {"type": "seller", "principal_id": "A0001SELLER-owner"}
        doc["approval"] = {
            "approval_id": "ap-1",
            "action": "listing.price_change",
            "approved_by": "A0001SELLER-owner",
            "expires_at": "2026-11-03T00:00:00+01:00",
        }
    if action == "policy.update":
        doc["actor"] = {"type": "seller", "principal_id": "A0001SELLER-owner"}
        doc["policy"] = {"rate_limit_per_min": 120}
    return doc


FULL_GRANT = {
    "grant_id": "g-A0001SELLER-prov-003",
    "provider_id": "prov-003",
    "principals": ["prov-003-user-0", "prov-003-user-1"],
    "scopes": ["listing.*", "inventory.update", "report.download"],
    "marketplaces": ["DE", "FR"],
    "ip_allowlist": ["185.12.40.0/24", "2001:DB8::/32", "10.1.2.3/8"],
    "max_price_change_pct": 30,
    "require_approval": ["funds.*"],
    "active_hours": {"tz": "Europe/Berlin", "start": "08:00", "end": "19:30"},
    "valid_until": "2027-01-01T00:00:00+01:00",
}

RICH = {
    "event_id": "gw-7f3a-000123",
    "occurred_at": "2026-11-02T14:05:09.120+08:00",
    "account_id": "A0001SELLER",
    "marketplace": "DE",
    "action": "listing.price_change",
    "actor": {"type": "provider", "provider_id": "prov-003", "principal_id": "prov-003-user-1"},
    "source": {"ip": "185.12.40.7", "user_agent": "python-sp-api/1.8.0", "session_id": "s-1"},
    "operation": "patchListingsItem",
    "resource": {"type": "listing", "id": "SKU-01-0042"},
    "changes": [
        {"field": "price", "old": "19.99", "new": "17.49"},
        {"field": "quantity", "old": 3, "new": 4},
        {"field": "title", "old": None, "new": "Espresso cup"},
        {"field": "active", "new": True},
    ],
    "outcome": "success",
    "approval_id": "ap-1",
}


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    target: Any = doc
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is DELETE:
        del target[keys[-1]]
    elif isinstance(target, list):
        target[int(keys[-1])] = value
    else:
        target[keys[-1]] = value


def variant(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with dotted paths (`actor__type` for `actor.type`) set or deleted."""
    doc = copy.deepcopy(base)
    for path, value in changes.items():
        _set(doc, path.replace("__", "."), value)
    return doc


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# -- acceptance and normalization ---------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_is_accepted(action: str) -> None:
    doc = minimal(action)
    out = normalize(doc)
    assert out["action"] == action
    assert out["occurred_at"] == "2026-11-02T06:05:09.120Z"
    assert out["outcome"] == "success"
    assert parse_action(orjson.dumps(doc)) == out
    if needs_marketplace(action):
        assert out["marketplace"] == "DE"
    assert set(out) <= event_mod._TOP_LEVEL


def test_rich_event_is_kept_field_for_field() -> None:
    out = normalize(RICH)
    assert out["source"] == RICH["source"]
    assert out["resource"] == RICH["resource"]
    assert out["changes"][3] == {"field": "active", "old": None, "new": True}
    assert out["changes"][:3] == RICH["changes"][:3]
    assert out["approval_id"] == "ap-1"


def test_full_grant_is_normalized() -> None:
    out = normalize(variant(minimal("permission.grant"), grant=FULL_GRANT))
    grant = out["grant"]
    assert grant["ip_allowlist"] == ["185.12.40.0/24", "2001:db8::/32", "10.0.0.0/8"]
    assert grant["valid_until"] == "2026-12-31T23:00:00.000Z"
    assert grant["active_hours"] == FULL_GRANT["active_hours"]
    assert grant["scopes"] == FULL_GRANT["scopes"]


@pytest.mark.parametrize(
    ("given_at", "stored"),
    [
        ("2026-11-02T06:05:09Z", "2026-11-02T06:05:09.000Z"),
        ("2026-11-02T14:05:09.120+08:00", "2026-11-02T06:05:09.120Z"),
        ("2026-11-02T11:35:09.5+05:30", "2026-11-02T06:05:09.500Z"),
        ("2026-11-01T22:05:09.1239-08:00", "2026-11-02T06:05:09.123Z"),  # truncated, not rounded
        ("2026-11-02T06:05:09.999999999Z", "2026-11-02T06:05:09.999Z"),
        ("2026-11-02t06:05:09.120z", "2026-11-02T06:05:09.120Z"),
        ("2026-11-02 06:05:09.120-00:00", "2026-11-02T06:05:09.120Z"),
        ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("2200-12-31T23:59:59.999+00:00", "2200-12-31T23:59:59.999Z"),
    ],
)
def test_timestamps_are_stored_as_utc_milliseconds(given_at: str, stored: str) -> None:
    assert normalize(variant(minimal(), occurred_at=given_at))["occurred_at"] == stored
    approval = normalize(variant(minimal("approval.grant"), approval__expires_at=given_at))
    assert approval["approval"]["expires_at"] == stored


@pytest.mark.parametrize(
    ("ip", "stored"),
    [
        ("185.12.40.7", "185.12.40.7"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
        ("::FFFF:192.0.2.1", "::ffff:192.0.2.1"),
        ("::1", "::1"),
    ],
)
def test_source_ip_is_normalized(ip: str, stored: str) -> None:
    assert normalize(variant(RICH, source__ip=ip))["source"]["ip"] == stored


def test_null_optional_fields_are_dropped() -> None:
    doc = variant(
        minimal("auth.login"),
        marketplace=None,
        operation=None,
        approval_id=None,
        outcome=None,
        source={"ip": None, "user_agent": None},
        actor={"type": "seller", "principal_id": "u", "provider_id": None},
    )
    out = normalize(doc)
    assert out["outcome"] == "success"
    assert out["source"] == {}
    assert out["actor"] == {"type": "seller", "principal_id": "u"}
    assert not {"marketplace", "operation", "approval_id"} & out.keys()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("DE", "DE"),
        ("A1PA6795UKMFR9", "DE"),
        ("ATVPDKIKX0DER", "US"),
        ("UK", "UK"),
        ("GB", "UK"),
        ("A1F83G8C2ARO7P", "UK"),
        ("IE", "IE"),
        ("A28R8C7NBKEWEA", "IE"),
        ("ZA", "ZA"),
        ("AE08WJ6YKNBMC", "ZA"),
        ("EG", "EG"),
        ("ARBP9OOSHTCHU", "EG"),
        ("A1VC38T7YXB528", "JP"),
    ],
)
def test_marketplace_ids_and_country_codes_name_one_site(given: str, stored: str) -> None:
    assert normalize(variant(minimal(), marketplace=given))["marketplace"] == stored
    grant = normalize(variant(minimal("permission.grant"), grant__marketplaces=[given, "FR"]))
    assert grant["grant"]["marketplaces"] == [stored, "FR"]
    filing = {"marketplace": given, "cadence": "monthly", "due_day": 10}
    policy = normalize(variant(minimal("policy.update"), policy={"tax_filings": [filing]}))
    assert policy["policy"]["tax_filings"] == [{**filing, "marketplace": stored}]
    assert filing["marketplace"] == given  # the input document is not changed


def test_every_site_is_accepted_by_code_and_by_id() -> None:
    for code, marketplace_id in MARKETPLACE_IDS.items():
        assert normalize(variant(minimal(), marketplace=code))["marketplace"] == code
        assert normalize(variant(minimal(), marketplace=marketplace_id))["marketplace"] == code


def test_origin_is_kept_as_sent() -> None:
    origin = {
        "adapter": "sp-api-gateway",
        "method": "PATCH",
        "path": "/listings/2021-08-01/items/A1SELLER/SKU-1",
        "status": 200,
        "submission_id": "f1dc2914-75dd-11ea-bc55-0242ac130003",
        "notification": {"type": "LISTINGS_ITEM_STATUS_CHANGE", "ids": [1, 2.5, None, True]},
    }
    out = normalize(variant(RICH, origin=origin))
    assert out["origin"] == origin
    assert normalize(variant(RICH, origin={"adapter": "a"}))["origin"] == {"adapter": "a"}
    assert "origin" not in normalize(RICH)


def test_grant_skus_are_kept() -> None:
    out = normalize(variant(minimal("permission.grant"), grant__skus=["SKU-1", "MUG-*"]))
    assert out["grant"]["skus"] == ["SKU-1", "MUG-*"]


def test_disbursement_amount_is_optional_and_checked_when_given() -> None:
    doc = minimal("funds.disbursement_request")
    assert "amount" not in doc and "amount" not in normalize(doc)
    with_amount = variant(doc, amount={"value": "1000.00", "currency": "EUR"})
    assert normalize(with_amount)["amount"] == {"value": "1000.00", "currency": "EUR"}


# -- rejections ---------------------------------------------------------------------------------

#: (id, document, reason): documents the validator must reject, with the reason it gives.
REJECTED_DOCS: list[tuple[str, Any, str]] = [
    ("not_object_array", [], "not_object"),
    ("not_object_string", "listing.update", "not_object"),
    ("not_object_null", None, "not_object"),
    ("unknown_top_level", variant(minimal(), severity="high"), "unknown_field"),
    ("unknown_in_actor", variant(minimal(), actor__role="admin"), "unknown_field"),
    ("unknown_in_source", variant(RICH, source__port=443), "unknown_field"),
    ("unknown_in_resource", variant(RICH, resource__name="x"), "unknown_field"),
    ("unknown_in_change", variant(RICH, changes__0__note="x"), "unknown_field"),
    ("unknown_in_amount", variant(minimal("funds.refund"), amount__fx="1.1"), "unknown_field"),
    ("unknown_in_grant", variant(minimal("permission.grant"), grant__owner="x"), "unknown_field"),
    (
        "unknown_in_active_hours",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "UTC", "start": "08:00", "end": "18:00", "days": "mon"},
        ),
        "unknown_field",
    ),
    (
        "unknown_in_approval",
        variant(minimal("approval.grant"), approval__note="x"),
        "unknown_field",
    ),
    (
        "unknown_in_tax_filing",
        variant(
            minimal("policy.update"),
            policy={
                "tax_filings": [
                    {"marketplace": "DE", "cadence": "monthly", "due_day": 10, "form": "UStVA"}
                ]
            },
        ),
        "unknown_field",
    ),
    ("missing_event_id", variant(minimal(), event_id=DELETE), "missing_field"),
    ("missing_occurred_at", variant(minimal(), occurred_at=DELETE), "missing_field"),
    ("null_occurred_at", variant(minimal(), occurred_at=None), "missing_field"),
    ("missing_account_id", variant(minimal(), account_id=DELETE), "missing_field"),
    ("missing_action", variant(minimal(), action=DELETE), "missing_field"),
    ("missing_actor", variant(minimal(), actor=DELETE), "missing_field"),
    ("missing_actor_type", variant(minimal(), actor__type=DELETE), "missing_field"),
    ("missing_principal", variant(minimal(), actor__principal_id=DELETE), "missing_field"),
    (
        "provider_without_provider_id",
        variant(minimal(), actor__provider_id=DELETE),
        "missing_field",
    ),
    (
        "provider_with_null_provider_id",
        variant(minimal(), actor__provider_id=None),
        "missing_field",
    ),
    (
        "listing_without_marketplace",
        variant(minimal("listing.update"), marketplace=DELETE),
        "missing_field",
    ),
    (
        "funds_with_null_marketplace",
        variant(minimal("funds.refund"), marketplace=None),
        "missing_field",
    ),
    (
        "tax_without_marketplace",
        variant(minimal("tax.filing"), marketplace=DELETE),
        "missing_field",
    ),
    ("refund_without_amount", variant(minimal("funds.refund"), amount=DELETE), "missing_field"),
    ("null_amount", variant(minimal(), amount=None), "missing_field"),
    (
        "amount_without_currency",
        variant(minimal("funds.refund"), amount__currency=DELETE),
        "missing_field",
    ),
    (
        "grant_event_without_grant",
        variant(minimal("permission.grant"), grant=DELETE),
        "missing_field",
    ),
    ("revoke_without_grant", variant(minimal("permission.revoke"), grant=DELETE), "missing_field"),
    (
        "grant_without_grant_id",
        variant(minimal("permission.grant"), grant__grant_id=DELETE),
        "missing_field",
    ),
    (
        "grant_without_provider",
        variant(minimal("permission.grant"), grant__provider_id=DELETE),
        "missing_field",
    ),
    (
        "grant_on_other_action_without_provider",
        variant(minimal("auth.login"), grant={"grant_id": "g"}),
        "missing_field",
    ),
    (
        "active_hours_without_end",
        variant(minimal("permission.grant"), grant__active_hours={"tz": "UTC", "start": "08:00"}),
        "missing_field",
    ),
    (
        "approval_event_without_approval",
        variant(minimal("approval.grant"), approval=DELETE),
        "missing_field",
    ),
    (
        "approval_without_expiry",
        variant(minimal("approval.grant"), approval__expires_at=DELETE),
        "missing_field",
    ),
    (
        "policy_event_without_policy",
        variant(minimal("policy.update"), policy=DELETE),
        "missing_field",
    ),
    ("change_without_field", variant(RICH, changes=[{"old": 1, "new": 2}]), "missing_field"),
    ("event_id_number", variant(minimal(), event_id=123), "wrong_type"),
    ("account_id_number", variant(minimal(), account_id=1), "wrong_type"),
    ("action_list", variant(minimal(), action=["listing.update"]), "wrong_type"),
    ("actor_list", variant(minimal(), actor=["provider"]), "wrong_type"),
    ("principal_number", variant(minimal(), actor__principal_id=7), "wrong_type"),
    ("source_string", variant(minimal(), source="185.12.40.7"), "wrong_type"),
    ("null_source", variant(minimal(), source=None), "wrong_type"),
    ("source_ip_number", variant(minimal(), source={"ip": 3232235777}), "wrong_type"),
    ("resource_string", variant(minimal(), resource="SKU-1"), "wrong_type"),
    ("changes_object", variant(minimal(), changes={"field": "price"}), "wrong_type"),
    ("change_not_object", variant(minimal(), changes=["price"]), "wrong_type"),
    ("change_value_object", variant(RICH, changes__1__new={"qty": 4}), "wrong_type"),
    ("occurred_at_number", variant(minimal(), occurred_at=1762063509120), "wrong_type"),
    ("amount_string", variant(minimal("funds.refund"), amount="120.50 EUR"), "wrong_type"),
    ("amount_value_number", variant(minimal("funds.refund"), amount__value=120.5), "wrong_type"),
    ("outcome_bool", variant(minimal(), outcome=True), "wrong_type"),
    (
        "scopes_string",
        variant(minimal("permission.grant"), grant__scopes="listing.*"),
        "wrong_type",
    ),
    (
        "principals_with_number",
        variant(minimal("permission.grant"), grant__principals=["u1", 2]),
        "wrong_type",
    ),
    (
        "allowlist_empty_entry",
        variant(minimal("permission.grant"), grant__ip_allowlist=[""]),
        "wrong_type",
    ),
    ("policy_list", variant(minimal("policy.update"), policy=[1]), "wrong_type"),
    (
        "tax_filings_object",
        variant(minimal("policy.update"), policy={"tax_filings": {"DE": "monthly"}}),
        "wrong_type",
    ),
    ("approval_string", variant(minimal("approval.grant"), approval="ap-1"), "wrong_type"),
    ("event_id_with_space", variant(minimal(), event_id="gw 1"), "bad_value"),
    ("event_id_too_long", variant(minimal(), event_id="e" * 129), "bad_value"),
    ("event_id_empty", variant(minimal(), event_id=""), "bad_value"),
    ("account_id_too_long", variant(minimal(), account_id="A" * 65), "bad_value"),
    ("account_id_empty", variant(minimal(), account_id=""), "bad_value"),
    ("unknown_marketplace", variant(minimal(), marketplace="XX"), "bad_value"),
    ("lowercase_marketplace", variant(minimal(), marketplace="de"), "bad_value"),
    ("lowercase_marketplace_id", variant(minimal(), marketplace="atvpdkikx0der"), "bad_value"),
    ("unknown_marketplace_id", variant(minimal(), marketplace="ATVPDKIKX0DEX"), "bad_value"),
    ("marketplace_too_long", variant(minimal(), marketplace="A" * 17), "bad_value"),
    ("marketplace_number", variant(minimal(), marketplace=1), "wrong_type"),
    ("origin_null", variant(minimal(), origin=None), "wrong_type"),
    ("origin_array", variant(minimal(), origin=[{"adapter": "a"}]), "wrong_type"),
    ("origin_without_adapter", variant(minimal(), origin={"path": "/x"}), "missing_field"),
    ("origin_adapter_number", variant(minimal(), origin={"adapter": 1}), "wrong_type"),
    ("origin_adapter_upper", variant(minimal(), origin={"adapter": "Gateway"}), "bad_value"),
    ("origin_adapter_empty", variant(minimal(), origin={"adapter": ""}), "bad_value"),
    ("origin_adapter_long", variant(minimal(), origin={"adapter": "a" * 65}), "bad_value"),
    (
        "grant_skus_not_list",
        variant(minimal("permission.grant"), grant__skus="SKU-1"),
        "wrong_type",
    ),
    (
        "grant_skus_empty_string",
        variant(minimal("permission.grant"), grant__skus=[""]),
        "wrong_type",
    ),
    (
        "grant_unknown_marketplace_id",
        variant(minimal("permission.grant"), grant__marketplaces=["A1PA6795UKMFR0"]),
        "bad_value",
    ),
    ("unknown_actor_type", variant(minimal(), actor__type="agency"), "bad_value"),
    ("principal_too_long", variant(minimal(), actor__principal_id="p" * 129), "bad_value"),
    ("unknown_outcome", variant(minimal(), outcome="ok"), "bad_value"),
    ("operation_too_long", variant(minimal(), operation="o" * 129), "bad_value"),
    ("bad_ipv4", variant(minimal(), source={"ip": "999.1.1.1"}), "bad_value"),
    ("ipv4_leading_zero", variant(minimal(), source={"ip": "010.1.1.1"}), "bad_value"),
    ("ip_with_port", variant(minimal(), source={"ip": "185.12.40.7:443"}), "bad_value"),
    ("ipv6_zone_id", variant(minimal(), source={"ip": "fe80::1%eth0"}), "bad_value"),
    ("ipv6_long_zone_id", variant(minimal(), source={"ip": "fe80::1%" + "a" * 80}), "bad_value"),
    ("user_agent_empty", variant(minimal(), source={"user_agent": ""}), "bad_value"),
    ("amount_with_comma", variant(minimal("funds.refund"), amount__value="120,50"), "bad_value"),
    (
        "amount_unicode_digits",
        variant(minimal("funds.refund"), amount__value="\u0661\u0662\u0660.\u0665\u0660"),
        "bad_value",
    ),
    (
        "amount_too_many_decimals",
        variant(minimal("funds.refund"), amount__value="1.123456789"),
        "bad_value",
    ),
    ("currency_lowercase", variant(minimal("funds.refund"), amount__currency="eur"), "bad_value"),
    ("currency_too_long", variant(minimal("funds.refund"), amount__currency="EURO"), "bad_value"),
    ("price_with_currency", variant(RICH, changes__0__new="17.49 EUR"), "bad_value"),
    ("price_as_number", variant(RICH, changes__0__old=19.99), "bad_value"),
    (
        "price_unicode_digits",
        variant(RICH, changes__0__new="\u0661\u0667.\u0664\u0669"),
        "bad_value",
    ),
    ("change_int_out_of_range", variant(RICH, changes__1__new=2**53 + 1), "bad_value"),
    ("change_string_too_long", variant(RICH, changes__2__new="x" * 8193), "bad_value"),
    (
        "grant_unknown_site",
        variant(minimal("permission.grant"), grant__marketplaces=["DE", "XX"]),
        "bad_value",
    ),
    (
        "grant_pct_negative",
        variant(minimal("permission.grant"), grant__max_price_change_pct=-1),
        "bad_value",
    ),
    (
        "grant_pct_bool",
        variant(minimal("permission.grant"), grant__max_price_change_pct=True),
        "bad_value",
    ),
    (
        "grant_start_24h",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "UTC", "start": "24:00", "end": "08:00"},
        ),
        "bad_value",
    ),
    (
        "grant_start_unicode_digits",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "UTC", "start": "0\u0668:00", "end": "18:00"},
        ),
        "bad_value",
    ),
    (
        "grant_id_too_long",
        variant(minimal("permission.grant"), grant__grant_id="g" * 129),
        "bad_value",
    ),
    (
        "policy_rate_zero",
        variant(minimal("policy.update"), policy={"rate_limit_per_min": 0}),
        "bad_value",
    ),
    (
        "policy_rate_string",
        variant(minimal("policy.update"), policy={"rate_limit_per_min": "60"}),
        "bad_value",
    ),
    (
        "policy_rate_bool",
        variant(minimal("policy.update"), policy={"rate_limit_per_min": True}),
        "bad_value",
    ),
    (
        "tax_filing_weekly",
        variant(
            minimal("policy.update"),
            policy={"tax_filings": [{"marketplace": "DE", "cadence": "weekly", "due_day": 10}]},
        ),
        "bad_value",
    ),
    (
        "tax_filing_day_32",
        variant(
            minimal("policy.update"),
            policy={"tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 32}]},
        ),
        "bad_value",
    ),
    (
        "tax_filing_no_site",
        variant(
            minimal("policy.update"),
            policy={"tax_filings": [{"cadence": "monthly", "due_day": 10}]},
        ),
        "bad_value",
    ),
    (
        "approval_id_empty",
        variant(minimal("approval.grant"), approval__approval_id=""),
        "bad_value",
    ),
    ("unknown_action", variant(minimal(), action="listing.hack"), "unknown_action"),
    ("action_case", variant(minimal(), action="Listing.Update"), "unknown_action"),
    ("no_offset", variant(minimal(), occurred_at="2026-11-02T10:00:00"), "bad_timestamp"),
    ("prose_timestamp", variant(minimal(), occurred_at="yesterday"), "bad_timestamp"),
    ("date_only", variant(minimal(), occurred_at="2026-11-02"), "bad_timestamp"),
    (
        "offset_without_colon",
        variant(minimal(), occurred_at="2026-11-02T10:00:00+0100"),
        "bad_timestamp",
    ),
    (
        "offset_hours_only",
        variant(minimal(), occurred_at="2026-11-02T10:00:00+01"),
        "bad_timestamp",
    ),
    (
        "offset_minutes_99",
        variant(minimal(), occurred_at="2026-11-02T10:00:00+01:99"),
        "bad_timestamp",
    ),
    (
        "offset_with_seconds",
        variant(minimal(), occurred_at="2026-11-02T10:00:00+01:00:30"),
        "bad_timestamp",
    ),
    ("week_date", variant(minimal(), occurred_at="2026-W45-1T10:00:00Z"), "bad_timestamp"),
    ("comma_fraction", variant(minimal(), occurred_at="2026-11-02T10:00:00,5Z"), "bad_timestamp"),
    ("empty_fraction", variant(minimal(), occurred_at="2026-11-02T10:00:00.Z"), "bad_timestamp"),
    ("no_seconds", variant(minimal(), occurred_at="2026-11-02T10:00+01:00"), "bad_timestamp"),
    ("february_30", variant(minimal(), occurred_at="2026-02-30T10:00:00Z"), "bad_timestamp"),
    ("hour_24", variant(minimal(), occurred_at="2026-11-02T24:00:00Z"), "bad_timestamp"),
    ("leap_second", variant(minimal(), occurred_at="2016-12-31T23:59:60Z"), "bad_timestamp"),
    ("before_1970", variant(minimal(), occurred_at="1969-12-31T23:59:59Z"), "bad_timestamp"),
    ("after_2200", variant(minimal(), occurred_at="2201-01-01T00:00:00Z"), "bad_timestamp"),
    (
        "too_long_fraction",
        variant(minimal(), occurred_at="2026-11-02T10:00:00." + "1" * 30 + "Z"),
        "bad_timestamp",
    ),
    (
        "bad_valid_until",
        variant(minimal("permission.grant"), grant__valid_until="next week"),
        "bad_timestamp",
    ),
    (
        "bad_expires_at",
        variant(minimal("approval.grant"), approval__expires_at="2026-11-03"),
        "bad_timestamp",
    ),
]

#: Documents the validator rejects for a rule JSON Schema cannot state (reason, why).
SCHEMA_BLIND_REJECTED: list[tuple[str, Any, str, str]] = [
    (
        "unknown_tz",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "Mars/Olympus", "start": "08:00", "end": "18:00"},
        ),
        "bad_value",
        "IANA time zone names",
    ),
    (
        "tz_is_a_folder",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "America", "start": "08:00", "end": "18:00"},
        ),
        "bad_value",
        "IANA time zone names",
    ),
    (
        "allowlist_not_cidr",
        variant(minimal("permission.grant"), grant__ip_allowlist=["office"]),
        "bad_value",
        "CIDR syntax",
    ),
    (
        "allowlist_prefix_33",
        variant(minimal("permission.grant"), grant__ip_allowlist=["10.0.0.0/33"]),
        "bad_value",
        "CIDR syntax",
    ),
    (
        "policy_over_16k",
        variant(minimal("policy.update"), policy={"notes": "x" * 17000}),
        "bad_value",
        "the serialized size of an object",
    ),
    (
        "policy_nested_too_deep",
        variant(minimal("policy.update"), policy={"x": _deep(300)}),
        "bad_value",
        "the serializer's nesting limit",
    ),
    (  # fits orjson's 255 levels alone, not inside the event (the full fuzz found it)
        "policy_nested_to_the_serializer_limit",
        variant(minimal("policy.update"), policy={"x": _deep(252)}),
        "bad_value",
        "the serializer's nesting limit",
    ),
    (
        "origin_nested_to_the_serializer_limit",
        variant(minimal(), origin={"adapter": "a", "x": _deep(252)}),
        "bad_value",
        "the serializer's nesting limit",
    ),
    (
        "origin_too_large",
        variant(minimal(), origin={"adapter": "a", "body": "x" * 8200}),
        "bad_value",
        "the serialized size of an object",
    ),
    (
        "utc_before_1970",
        variant(minimal(), occurred_at="1970-01-01T00:30:00+01:00"),
        "bad_timestamp",
        "a range on the UTC value of a timestamp",
    ),
    (
        "utc_after_2200",
        variant(minimal(), occurred_at="2200-12-31T23:00:00-05:00"),
        "bad_timestamp",
        "a range on the UTC value of a timestamp",
    ),
    (
        "event_id_trailing_newline",
        variant(minimal(), event_id="gw-1\n"),
        "bad_value",
        "python-jsonschema runs `pattern` with Python `re`, whose `$` also matches before a final newline (ECMA-262's does not)",
    ),
    (
        "amount_trailing_newline",
        variant(minimal("funds.refund"), amount__value="1.00\n"),
        "bad_value",
        "python-jsonschema runs `pattern` with Python `re`, whose `$` also matches before a final newline (ECMA-262's does not)",
    ),
    (
        "rate_limit_float",
        variant(minimal("policy.update"), policy={"rate_limit_per_min": 60.0}),
        "bad_value",
        "JSON Schema's `integer` includes 60.0",
    ),
    (
        "due_day_float",
        variant(
            minimal("policy.update"),
            policy={"tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 1.0}]},
        ),
        "bad_value",
        "JSON Schema's `integer` includes 1.0",
    ),
]

#: Documents the validator accepts but the schema (with format assertion) rejects.
SCHEMA_BLIND_ACCEPTED: list[tuple[str, Any, str]] = [
    (
        "space_separator",
        variant(minimal(), occurred_at="2026-11-02 06:05:09Z"),
        "`format: date-time` follows the RFC 3339 ABNF (T only); the validator also takes the space the RFC's note allows",
    ),
    (
        "change_float_beyond_2_53",
        variant(RICH, changes__1__new=1e300),
        "the validator range-checks integers only; JSON Schema cannot tell 1e300 from an integer",
    ),
]


def test_every_reason_is_reachable() -> None:
    reasons = {r for _, _, r in REJECTED_DOCS} | {"too_large", "bad_encoding", "not_json"}
    # `wrong_key` is the ingest service's: the Kafka key differs from the event's account_id
    # (sent through Kafka to a worker in tests/integration/test_ledger_claims.py).
    assert reasons | {"wrong_key"} == set(REASONS)


@pytest.mark.parametrize(
    ("doc", "reason"), [(d, r) for _, d, r in REJECTED_DOCS], ids=[i for i, _, _ in REJECTED_DOCS]
)
def test_rejected_with_reason(doc: Any, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        normalize(doc)
    assert caught.value.reason == reason, caught.value.detail
    assert caught.value.reason in REASONS
    # The same verdict for the bytes on the wire.
    with pytest.raises(Rejected) as wire:
        parse_action(orjson.dumps(doc))
    assert wire.value.reason == reason


@pytest.mark.parametrize(
    ("doc", "reason"),
    [(d, r) for _, d, r, _ in SCHEMA_BLIND_REJECTED],
    ids=[i for i, *_ in SCHEMA_BLIND_REJECTED],
)
def test_rejected_beyond_the_schema(doc: Any, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        normalize(doc)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "doc", [d for _, d, _ in SCHEMA_BLIND_ACCEPTED], ids=[i for i, *_ in SCHEMA_BLIND_ACCEPTED]
)
def test_accepted_beyond_the_schema(doc: Any) -> None:
    assert isinstance(normalize(doc), dict)


@pytest.mark.parametrize(
    ("raw", "max_bytes", "reason"),
    [
        (b"x" * 101, 100, "too_large"),
        (orjson.dumps(variant(RICH, operation="o" * 100)), 200, "too_large"),
        (b'{"event_id": "\xff\xfe"}', 65536, "bad_encoding"),
        (b"\xc3\x28", 65536, "bad_encoding"),
        (b"", 65536, "not_json"),
        (b'{"event_id": ', 65536, "not_json"),
        (b"{'event_id': 'x'}", 65536, "not_json"),
        (b"NaN", 65536, "not_json"),
        (b"[]", 65536, "not_object"),
        (b"42", 65536, "not_object"),
    ],
)
def test_wire_rejections(raw: bytes, max_bytes: int, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_action(raw, max_bytes)
    assert caught.value.reason == reason


def test_size_limit_is_inclusive() -> None:
    raw = orjson.dumps(RICH)
    assert parse_action(raw, len(raw))["event_id"] == RICH["event_id"]


# -- the JSON Schema ----------------------------------------------------------------------------


def test_schema_vocabularies_match_the_contract() -> None:
    props = SCHEMA["properties"]
    assert set(props["action"]["enum"]) == ACTIONS
    assert len(props["action"]["enum"]) == len(ACTIONS)
    assert set(props["marketplace"]["enum"]) == ACCEPTED | {None}
    assert set(SCHEMA["$defs"]["site"]["enum"]) == ACCEPTED
    assert set(MARKETPLACE_IDS) == MARKETPLACES and MARKETPLACES < ACCEPTED
    assert set(props["outcome"]["enum"]) == OUTCOMES | {None}
    assert set(props["actor"]["properties"]["type"]["enum"]) == ACTOR_TYPES
    assert set(props) == event_mod._TOP_LEVEL
    assert set(props["grant"]["properties"]) == GRANT_FIELDS


def test_schema_conditionals_match_the_contract() -> None:
    import re

    rules = SCHEMA["allOf"]
    marketplace_rule = next(
        r for r in rules if r.get("then", {}).get("required") == ["marketplace"]
    )
    pattern = marketplace_rule["if"]["properties"]["action"]["pattern"]
    assert {a for a in ACTIONS if re.search(pattern, a)} == {
        a for a in ACTIONS if needs_marketplace(a)
    }
    assert {a for a in ACTIONS if a.startswith(MARKETPLACE_REQUIRED_PREFIXES)} == {
        a for a in ACTIONS if re.search(pattern, a)
    }
    amount_rule = next(r for r in rules if r.get("then", {}).get("required") == ["amount"])
    assert set(amount_rule["if"]["properties"]["action"]["enum"]) == AMOUNT_REQUIRED


def _walk_properties(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of property schemas without a description (conditional fragments excluded)."""
    missing = []
    for name, sub in schema.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        if "description" not in sub:
            missing.append(here)
        missing += _walk_properties(sub, here)
        if isinstance(sub.get("items"), dict):
            if "description" not in sub["items"]:
                missing.append(here + "[]")
            missing += _walk_properties(sub["items"], here + "[]")
    return missing


def test_schema_is_self_describing() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] and SCHEMA["title"] == "ProviderAction" and SCHEMA["description"]
    assert _walk_properties(SCHEMA) == []
    assert all("description" in d for d in SCHEMA["$defs"].values())
    assert SCHEMA["additionalProperties"] is False
    for name in ("actor", "source", "resource", "amount", "grant", "approval"):
        assert SCHEMA["properties"][name]["additionalProperties"] is False, name
    assert SCHEMA["properties"]["changes"]["items"]["additionalProperties"] is False


@pytest.fixture(scope="module")
def schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="the schema tests need jsonschema")
    pytest.importorskip(
        "rfc3339_validator", reason="jsonschema checks `date-time` with rfc3339-validator"
    )
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    checker = jsonschema.FormatChecker()
    assert {"date-time", "ipv4", "ipv6"} <= set(checker.checkers)
    return jsonschema.Draft202012Validator(SCHEMA, format_checker=checker)


def _validator_accepts(doc: Any) -> bool:
    try:
        normalize(doc)
    except Rejected:
        return False
    return True


def _skip(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skip(reason=f"validator and schema differ by design: {reason}")


#: Valid documents beyond `minimal`, at the edges of what the contract allows.
EDGE_VALID: list[tuple[str, Any]] = [
    ("rich", RICH),
    ("full_grant", variant(minimal("permission.grant"), grant=FULL_GRANT)),
    (
        "revoke_with_provider",
        variant(minimal("permission.revoke"), grant={"grant_id": "g-1", "provider_id": "p"}),
    ),
    (
        "revoke_null_provider",
        variant(minimal("permission.revoke"), grant={"grant_id": "g-1", "provider_id": None}),
    ),
    (
        "grant_nulls",
        variant(
            minimal("permission.grant"),
            grant={
                "grant_id": "g",
                "provider_id": "p",
                "principals": None,
                "scopes": None,
                "marketplaces": None,
                "ip_allowlist": None,
                "max_price_change_pct": None,
                "require_approval": None,
                "active_hours": None,
                "valid_until": None,
            },
        ),
    ),
    ("grant_on_listing_event", variant(minimal(), grant={"grant_id": "g", "provider_id": "p"})),
    (
        "amount_on_login",
        variant(minimal("auth.login"), amount={"value": "-0.5", "currency": "JPY"}),
    ),
    (
        "approval_on_login",
        variant(minimal("auth.login"), approval=minimal("approval.grant")["approval"]),
    ),
    ("policy_on_login", variant(minimal("auth.login"), policy={})),
    (
        "policy_extra_keys",
        variant(
            minimal("policy.update"),
            policy={
                "rate_limit_per_min": None,
                "tax_filings": [{"marketplace": "UK", "cadence": "quarterly", "due_day": 31}],
                "notify": ["sec@example.com"],
                "nested": {"a": [1, 2.5, None]},
            },
        ),
    ),
    ("seller_no_provider", variant(minimal(), actor={"type": "seller", "principal_id": "owner"})),
    (
        "amazon_null_provider",
        variant(
            minimal(), actor={"type": "amazon", "principal_id": "support", "provider_id": None}
        ),
    ),
    ("marketplace_on_login", variant(minimal("auth.login"), marketplace="SA")),
    ("marketplace_id", variant(minimal(), marketplace="ATVPDKIKX0DER")),
    ("marketplace_gb", variant(minimal(), marketplace="GB")),
    (
        "marketplace_new_sites",
        variant(minimal("permission.grant"), grant__marketplaces=["IE", "ZA", "EG"]),
    ),
    ("origin_minimal", variant(minimal(), origin={"adapter": "sp-api-gateway"})),
    (
        "origin_nested",
        variant(minimal(), origin={"adapter": "n", "payload": {"a": [1, {"b": None}]}, "s": 200}),
    ),
    ("grant_skus", variant(minimal("permission.grant"), grant__skus=["SKU-1", "MUG-*"])),
    ("disbursement_without_amount", variant(minimal("funds.disbursement_request"))),
    (
        "null_optionals",
        variant(
            minimal("auth.login"), marketplace=None, operation=None, outcome=None, approval_id=None
        ),
    ),
    ("empty_source", variant(minimal(), source={})),
    (
        "null_source_fields",
        variant(minimal(), source={"ip": None, "user_agent": None, "session_id": None}),
    ),
    ("ipv6_source", variant(minimal(), source={"ip": "2001:DB8::1"})),
    ("mapped_source", variant(minimal(), source={"ip": "::ffff:185.12.40.7"})),
    ("empty_resource", variant(minimal(), resource={})),
    ("empty_changes", variant(minimal(), changes=[])),
    (
        "price_nulls",
        variant(RICH, changes=[{"field": "price", "old": None, "new": "0"}, {"field": "price"}]),
    ),
    ("change_int_2_53", variant(RICH, changes__1__new=2**53)),
    ("change_int_minus_2_53", variant(RICH, changes__1__new=-(2**53))),
    ("change_string_8192", variant(RICH, changes__2__new="x" * 8192)),
    ("change_float", variant(RICH, changes__1__new=2.5)),
    ("event_id_128", variant(minimal(), event_id="e:." + "9" * 125)),
    ("account_id_64", variant(minimal(), account_id="A" * 64)),
    ("principal_128", variant(minimal(), actor__principal_id="p" * 128)),
    ("outcome_denied", variant(minimal(), outcome="denied")),
    (
        "decimal_12_8",
        variant(minimal("funds.refund"), amount__value="-123456789012.12345678"),
    ),
    ("lowercase_t_z", variant(minimal(), occurred_at="2026-11-02t06:05:09z")),
    ("negative_zero_offset", variant(minimal(), occurred_at="2026-11-02T06:05:09-00:00")),
    ("offset_23_59", variant(minimal(), occurred_at="2026-11-02T06:05:09+23:59")),
    ("long_fraction", variant(minimal(), occurred_at="2026-11-02T06:05:09.12345678901234567Z")),
    ("leap_day", variant(minimal(), occurred_at="2028-02-29T12:00:00Z")),
    ("year_1970", variant(minimal(), occurred_at="1970-01-01T00:00:00Z")),
    ("year_2200", variant(minimal(), occurred_at="2200-12-31T23:59:59Z")),
    ("pct_float", variant(minimal("permission.grant"), grant__max_price_change_pct=12.5)),
    ("pct_max", variant(minimal("permission.grant"), grant__max_price_change_pct=10000)),
    (
        "hours_edges",
        variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": "UTC", "start": "00:00", "end": "23:59"},
        ),
    ),
    ("approval_with_resource", variant(minimal("approval.grant"), approval__resource_id="SKU-1")),
]

#: Invalid documents beyond REJECTED_DOCS (schema-specific edges).
EDGE_INVALID: list[tuple[str, Any]] = [
    ("grant_null_on_listing", variant(minimal(), grant=None)),
    ("approval_null", variant(minimal(), approval=None)),
    ("policy_null", variant(minimal("auth.login"), policy=None)),
    ("resource_null", variant(minimal(), resource=None)),
    ("changes_null", variant(minimal(), changes=None)),
    ("changes_1001", variant(minimal(), changes=[{"field": "f"}] * 1001)),
    ("scopes_1001", variant(minimal("permission.grant"), grant__scopes=["*"] * 1001)),
    (
        "tax_filings_101",
        variant(
            minimal("policy.update"),
            policy={
                "tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 1}] * 101
            },
        ),
    ),
    ("pct_over_max", variant(minimal("permission.grant"), grant__max_price_change_pct=10000.5)),
    ("rate_over_max", variant(minimal("policy.update"), policy={"rate_limit_per_min": 1_000_001})),
    ("year_0", variant(minimal(), occurred_at="0000-01-01T00:00:00Z")),
    ("event_id_unicode", variant(minimal(), event_id="gw-ü")),
    ("ipv6_bad", variant(minimal(), source={"ip": "2001:db8::g"})),
    ("ipv6_triple_colon", variant(minimal(), source={"ip": "2001:::1"})),
    ("cidr_as_source", variant(minimal(), source={"ip": "10.0.0.0/8"})),
]

CORPUS = (
    [pytest.param(minimal(a), True, id=f"valid-{a}") for a in sorted(ACTIONS)]
    + [pytest.param(d, True, id=f"valid-{i}") for i, d in EDGE_VALID]
    + [pytest.param(d, False, id=f"invalid-{i}") for i, d, _ in REJECTED_DOCS]
    + [pytest.param(d, False, id=f"invalid-{i}") for i, d in EDGE_INVALID]
    + [
        pytest.param(d, False, id=f"invalid-{i}", marks=_skip(why))
        for i, d, _, why in SCHEMA_BLIND_REJECTED
    ]
    + [
        pytest.param(d, True, id=f"valid-{i}", marks=_skip(why))
        for i, d, why in SCHEMA_BLIND_ACCEPTED
    ]
)


@pytest.mark.parametrize(("doc", "expected_valid"), CORPUS)
def test_validator_and_schema_agree(doc: Any, expected_valid: bool, schema_validator: Any) -> None:
    assert _validator_accepts(doc) is expected_valid
    errors = [e.message[:200] for e in schema_validator.iter_errors(doc)]
    assert (not errors) is expected_valid, errors


# -- canonical form and properties --------------------------------------------------------------


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


@pytest.mark.parametrize(
    "doc", [RICH, variant(minimal("permission.grant"), grant=FULL_GRANT), minimal("policy.update")]
)
def test_canonical_form_ignores_key_order(doc: dict[str, Any]) -> None:
    reordered = _reverse_keys(doc)
    assert list(reordered) != list(doc)
    first, second = canonical(normalize(doc)), canonical(normalize(reordered))
    assert first == second
    assert b" " not in first.replace(b"Espresso cup", b"")
    decoded = orjson.loads(first)
    assert list(decoded) == sorted(decoded)
    assert normalize(decoded) == normalize(doc)


def test_canonical_form_of_the_same_event_is_stable() -> None:
    assert canonical({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)

_FIELD_PATHS = [
    "event_id",
    "occurred_at",
    "account_id",
    "marketplace",
    "actor",
    "actor.type",
    "actor.provider_id",
    "actor.principal_id",
    "source",
    "source.ip",
    "source.user_agent",
    "action",
    "operation",
    "resource",
    "resource.id",
    "changes",
    "amount",
    "amount.value",
    "amount.currency",
    "outcome",
    "approval_id",
    "grant",
    "grant.grant_id",
    "grant.provider_id",
    "grant.scopes",
    "grant.ip_allowlist",
    "grant.marketplaces",
    "grant.max_price_change_pct",
    "grant.active_hours",
    "grant.valid_until",
    "approval",
    "approval.expires_at",
    "policy",
    "policy.rate_limit_per_min",
    "policy.tax_filings",
    "bogus",
]
_timestamps = st.one_of(
    st.datetimes(min_value=lo, max_value=hi, timezones=st.timezones())
    for lo, hi in [
        (datetime(1969, 12, 30), datetime(2201, 1, 2)),
        (datetime(1969, 12, 31), datetime(1970, 1, 2)),  # where the UTC year may differ
        (datetime(2200, 12, 30), datetime(2201, 1, 1)),
    ]
).map(lambda d: d.isoformat())
_ips = st.ip_addresses().map(str) | st.sampled_from(
    ["::FFFF:10.0.0.1", "2001:DB8:0::1", "fe80::1%1"]
)
_cidrs = st.ip_addresses().map(lambda a: f"{a}/{24 if a.version == 4 else 64}")
_field_values = st.one_of(
    json_values,
    _timestamps,
    _ips,
    st.lists(_cidrs, max_size=3),
    st.sampled_from(sorted(ACTIONS) + sorted(MARKETPLACES) + ["provider", "seller", "denied"]),
    st.builds(
        lambda d: {"field": "price", "old": d, "new": None},
        st.decimals(places=2, allow_nan=False, allow_infinity=False).map(str),
    ).map(lambda c: [c]),
    st.builds(
        lambda tz, h: {"tz": tz, "start": h, "end": "23:59"},
        st.timezone_keys() | st.text(max_size=10) | st.sampled_from(["America", "Etc", "../UTC"]),
        st.sampled_from(["00:00", "9:00", "23:59"]),
    ),
    st.just(DELETE),
)


def _mutate(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    keys = path.split(".")
    target = doc
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    if value is DELETE:
        target.pop(keys[-1], None)
    else:
        target[keys[-1]] = value
    return doc


near_valid_docs = st.builds(
    lambda action, edits: _apply_edits(minimal(action), edits),
    st.sampled_from(sorted(ACTIONS)),
    st.lists(st.tuples(st.sampled_from(_FIELD_PATHS), _field_values), max_size=3),
)


def _apply_edits(doc: dict[str, Any], edits: list[tuple[str, Any]]) -> dict[str, Any]:
    for path, value in edits:
        doc = _mutate(doc, path, value)
    return doc


def _check_normalize_contract(doc: Any) -> None:
    snapshot = copy.deepcopy(doc)
    try:
        out = normalize(doc)
    except Rejected as exc:
        assert exc.reason in REASONS
        outcome: Any = exc.reason
    else:
        assert isinstance(out, dict)
        assert normalize(out) == out  # idempotent: a stored event passes the gate again unchanged
        assert normalize(orjson.loads(canonical(out))) == out  # and so does its canonical form
        outcome = out
    assert doc == snapshot  # the input is never modified
    try:
        raw = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    try:
        wire: Any = parse_action(raw, 1 << 20)
    except Rejected as exc:
        wire = exc.reason
    assert wire == outcome  # bytes and decoded documents get the same verdict


_HYPOTHESIS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_HYPOTHESIS
@given(json_values)
def test_normalize_never_raises_anything_but_rejected(doc: Any) -> None:
    _check_normalize_contract(doc)


@_HYPOTHESIS
@given(st.dictionaries(st.sampled_from(sorted(event_mod._TOP_LEVEL)), json_values, max_size=8))
def test_normalize_on_documents_with_contract_keys(doc: dict[str, Any]) -> None:
    _check_normalize_contract(doc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_docs)
def test_normalize_on_near_valid_documents(doc: dict[str, Any]) -> None:
    _check_normalize_contract(doc)


@settings(max_examples=300, deadline=None)
@given(_timestamps)
def test_normalized_timestamps_parse_again(value: str) -> None:
    try:
        stored = event_mod.timestamp(value, "t")
    except Rejected as exc:
        assert exc.reason == "bad_timestamp"
        return
    assert event_mod.timestamp(stored, "t") == stored
    assert len(stored) == 24 and stored.endswith("Z")


def test_known_crashers_are_rejected() -> None:
    """Inputs that once escaped `normalize` as exceptions other than `Rejected`."""
    cases: list[Callable[[], Any]] = [
        lambda: normalize(
            variant(
                minimal("permission.grant"),
                grant__active_hours={"tz": "America", "start": "08:00", "end": "18:00"},
            )
        ),
        lambda: normalize(variant(minimal("policy.update"), policy={"x": _deep(300)})),
        lambda: normalize(variant(minimal("policy.update"), policy={"x": 2**70})),
        lambda: parse_action(
            orjson.dumps(variant(minimal("policy.update"), policy={"x": 0})).replace(
                b'"x":0', b'"x":' + b"[" * 300 + b"]" * 300
            )
        ),
    ]
    for case in cases:
        with pytest.raises(Rejected):
            case()


@given(st.integers(min_value=0, max_value=7_258_118_399_999))  # 1970 .. 2199
def test_format_ms_is_datetimes_own_format(ms: int) -> None:
    """`format_ms` (a lookup of the second's prefix and the millisecond's text) writes what
    `datetime` writes for the same instant, to the millisecond."""
    second = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    expected = f"{second}{ms % 1000:03d}Z"
    assert format_ms(ms) == expected
    assert timestamp_ms(format_ms(ms), "t") == ms
