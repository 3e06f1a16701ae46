"""Enforce mode: calls outside the principal's grant are refused before Amazon sees them.

The gateway learns grants and approvals from the ledger topic (a namespace of its own on the
local broker); the test writes ledger entries there as the worker would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from partnerwatch.local_worker import free_port, wait_for
from pipeline.event import format_ms, normalize
from sinks.kafka_io import ensure_topics, producer
from sources.gateway import enforce
from tests.gateway.harness import (
    ACCOUNT,
    DE,
    SELLER_ID,
    InThreadGateway,
    gateway_env,
    in_thread_config,
    issue,
    saleweaver,
    settings_for,
    trust,
)
from tests.gateway.pki import Pki
from tests.gateway.sandbox import Sandbox

pytestmark = pytest.mark.integration


def price_patch(price: float) -> dict[str, Any]:
    offer = {
        "marketplace_id": DE,
        "currency": "EUR",
        "audience": "ALL",
        "our_price": [{"schedule": [{"value_with_tax": price}]}],
    }
    return {
        "productType": "PRODUCT",
        "patches": [{"op": "replace", "path": "/attributes/purchasable_offer", "value": [offer]}],
    }


def seller_event(action: str, **fields: Any) -> dict[str, Any]:
    return normalize(
        {
            "event_id": f"seller-{uuid.uuid4().hex}",
            "occurred_at": format_ms(time.time_ns() // 1_000_000 - 60_000),
            "account_id": ACCOUNT,
            "action": action,
            "actor": {"type": "seller", "principal_id": "owner"},
            **fields,
        }
    )


class Ledger:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        ensure_topics(settings)
        self.producer = producer(settings, linger_ms=0)

    def write(self, *entries: dict[str, Any]) -> None:
        for entry in entries:
            self.producer.send(
                self.settings.ledger_topic, key=ACCOUNT.encode(), value=orjson.dumps(entry)
            ).get(30)

    def close(self) -> None:
        self.producer.close()


GRANT = {
    "grant_id": "g-prov-003",
    "provider_id": "prov-003",
    "principals": ["prov-003-user-1"],
    "scopes": ["listing.*", "inventory.update", "data.read"],
    "marketplaces": ["DE"],
    "skus": ["MUG-*"],
    "max_price_change_pct": 30,
}


@pytest.fixture
def enforcing(
    kafka_broker: str, tmp_path: Path, pki: Pki, sandbox: Sandbox, seller_secret: Path
) -> Iterator[tuple[InThreadGateway, Ledger]]:
    settings = settings_for(tmp_path, prefix=f"tgw{uuid.uuid4().hex[:8]}.")
    ledger = Ledger(settings)
    ledger.write(seller_event("permission.grant", grant=GRANT))
    env = gateway_env(
        pki,
        sandbox.base_url,
        seller_secret,
        tmp_path / "gw.sqlite",
        free_port(),
        PW_GATEWAY_MODE="enforce",
        PW_GATEWAY_PROVIDER_RATE="0.01",
        PW_GATEWAY_PROVIDER_BURST="8",
    )
    gateway = InThreadGateway(in_thread_config(env), settings).start()
    try:
        with trust(pki.ca_file):
            yield gateway, ledger
    finally:
        gateway.stop()
        ledger.close()


def test_out_of_scope_price_change_never_reaches_amazon(
    enforcing: tuple[InThreadGateway, Ledger], tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import ListingsItems
    from sp_api.base import SellingApiException

    gw, _ = enforcing
    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-user-1")
    client = saleweaver(ListingsItems, gw.url, creds, pki.ca_file, version="2021-08-01")

    # 20.00 -> 5.00 is a 75% cut: over the grant's 30%. The gateway reads the old price itself.
    with pytest.raises(SellingApiException) as refused:
        client.patch_listings_item(SELLER_ID, "MUG-1", body=price_patch(5.0), marketplaceIds=[DE])
    assert refused.value.code == 403
    error = refused.value.error[0]
    assert error["code"] == "Unauthorized" and "75.0%" in error["details"]
    assert sandbox.calls("patchListingsItem") == []  # it never arrived
    assert len(sandbox.calls("getListingsItem")) == 1  # the price lookup did

    # Inside the limit: forwarded. Outside the SKU set or the marketplace: refused.
    assert (
        client.patch_listings_item(
            SELLER_ID, "MUG-1", body=price_patch(18.0), marketplaceIds=[DE]
        ).payload["status"]
        == "ACCEPTED"
    )
    with pytest.raises(SellingApiException):
        client.patch_listings_item(
            SELLER_ID, "TEAPOT-1", body=price_patch(18.0), marketplaceIds=[DE]
        )
    with pytest.raises(SellingApiException):
        client.patch_listings_item(
            SELLER_ID, "MUG-1", body=price_patch(18.0), marketplaceIds=["A13V1IB3VIYZZH"]
        )
    assert len(sandbox.calls("patchListingsItem")) == 1

    patches = gw.of("patchListingsItem")
    assert [p["outcome"] for p in patches] == ["denied", "success", "denied", "denied"]
    assert patches[0]["changes"][0] == {"field": "price", "old": "20", "new": "5"}
    assert "does not cover SKU TEAPOT-1" in patches[2]["origin"]["reason"]
    assert "does not allow marketplace FR" in patches[3]["origin"]["reason"]
    assert all(p["actor"]["principal_id"] == "prov-003-user-1" for p in patches)
    assert not gw.rejected


def test_principal_and_scope_outside_the_grant(
    enforcing: tuple[InThreadGateway, Ledger], tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import Reports, Sellers
    from sp_api.base import SellingApiException

    gw, _ = enforcing
    store = gw.config.store_path(tmp_path)
    other = issue(store, "prov-003", "prov-003-intern")  # the grant names only prov-003-user-1
    with pytest.raises(SellingApiException) as refused:
        saleweaver(Sellers, gw.url, other, pki.ca_file).get_marketplace_participation()
    assert "no live grant covers prov-003-intern" in refused.value.error[0]["details"]
    creds = issue(store, "prov-003", "prov-003-user-1")
    with pytest.raises(SellingApiException):  # report.request is not in the grant's scopes
        saleweaver(Reports, gw.url, creds, pki.ca_file).create_report(
            reportType="GET_MERCHANT_LISTINGS_ALL_DATA", marketplaceIds=[DE]
        )
    assert saleweaver(Sellers, gw.url, creds, pki.ca_file).get_marketplace_participation().payload
    assert (
        sandbox.calls("createReport") == []
        and len(sandbox.calls("getMarketplaceParticipations")) == 1
    )
    assert not gw.rejected


def test_an_approval_from_the_ledger_lets_a_large_move_through(
    enforcing: tuple[InThreadGateway, Ledger], tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    gw, ledger = enforcing
    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-user-1")
    approval = {
        "approval_id": "ap-clearance",
        "action": "listing.price_change",
        "resource_id": "MUG-1",
        "approved_by": "owner",
        "expires_at": format_ms(time.time_ns() // 1_000_000 + 3_600_000),
    }
    ledger.write(seller_event("approval.grant", approval=approval))
    view = gw.gateway.view
    wait_for(
        lambda: "ap-clearance" in view.state["approvals"],
        30,
        "the approval folded from the ledger",
        0.1,
    )
    with httpx.Client(verify=pki.client_context()) as http:
        token = http.post(
            f"{gw.url}/auth/o2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token,
            },
        ).json()["access_token"]
        url = f"{gw.url}/listings/2021-08-01/items/{SELLER_ID}/MUG-1?marketplaceIds={DE}"
        headers = {"x-amz-access-token": token, "content-type": "application/json"}
        without = http.patch(url, content=orjson.dumps(price_patch(5.0)), headers=headers)
        approved = http.patch(
            url,
            content=orjson.dumps(price_patch(5.0)),
            headers={**headers, "x-pw-approval-id": "ap-clearance"},
        )
    assert without.status_code == 403 and without.json()["errors"][0]["code"] == "Unauthorized"
    assert approved.status_code == 200 and approved.json()["status"] == "ACCEPTED"
    assert len(sandbox.calls("patchListingsItem")) == 1
    last = gw.of("patchListingsItem")[-1]
    assert last["approval_id"] == "ap-clearance" and last["outcome"] == "success"


def test_the_provider_rate_budget(
    enforcing: tuple[InThreadGateway, Ledger], tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import Sellers
    from sp_api.base import SellingApiException

    gw, _ = enforcing
    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-user-1")
    client = saleweaver(Sellers, gw.url, creds, pki.ca_file)
    answered = 0
    with pytest.raises(SellingApiException) as throttled:
        for _ in range(50):
            client.get_marketplace_participation()
            answered += 1
    assert answered == gw.config.provider_burst  # the burst, then 429
    assert throttled.value.code == 429
    assert throttled.value.error[0]["code"] == "QuotaExceeded"
    assert len(sandbox.calls("getMarketplaceParticipations")) == answered
    assert gw.of("getMarketplaceParticipations")[-1]["outcome"] == "denied"


def test_decide_units() -> None:
    grant = {**GRANT, "granted_at": "2026-01-01T00:00:00.000Z"}
    auth = {"grants": {"g": grant}, "approvals": {}, "policy": {}}
    event = {
        "action": "listing.price_change",
        "occurred_at": "2026-11-02T06:00:00.000Z",
        "actor": {"type": "provider", "provider_id": "prov-003", "principal_id": "prov-003-user-1"},
        "resource": {"id": "MUG-1"},
    }
    allow = {"sites": ["DE"], "sku": "MUG-1", "default_max_pct": 30.0}
    assert (
        enforce.decide(auth, event, old_price="20", new_price="26", **allow) is None
    )  # exactly 30%
    denial = enforce.decide(auth, event, old_price="20", new_price="26.01", **allow)
    assert denial is not None and denial.status == 403
    assert (
        enforce.decide(auth, event, old_price=None, new_price="1", **allow) is None
    )  # not measurable
    revoked = {
        "grants": {"g": {**grant, "revoked_at": "2026-06-01T00:00:00.000Z"}},
        "approvals": {},
        "policy": {},
    }
    assert enforce.decide(revoked, event, old_price=None, new_price=None, **allow) is not None
    budget = enforce.RateBudget(rate=1.0, burst=2)
    assert [budget.take("p", now=0.0) for _ in range(3)] == [True, True, False]
    assert budget.take("p", now=1.0) and not budget.take("p", now=1.0)
    assert budget.take("q", now=1.0)
