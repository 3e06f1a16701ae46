"""Providers' real clients through the gateway (observe mode) to the sandbox upstream, over TLS.

Each call must reach the upstream with the seller's token (never the provider's), answer the
client as Amazon would, and become the right ProviderAction, valid under the contract.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import free_port
from tests.gateway.harness import (
    ACCOUNT,
    DE,
    SELLER_ID,
    InThreadGateway,
    gateway_env,
    in_thread_config,
    issue,
    official,
    saleweaver,
    settings_for,
    trust,
)
from tests.gateway.pki import Pki
from tests.gateway.sandbox import Sandbox

PRICE_PATCH = {
    "productType": "PRODUCT",
    "patches": [
        {
            "op": "replace",
            "path": "/attributes/purchasable_offer",
            "value": [
                {
                    "marketplace_id": DE,
                    "currency": "EUR",
                    "audience": "ALL",
                    "our_price": [{"schedule": [{"value_with_tax": 17.49}]}],
                }
            ],
        },
        {
            "op": "replace",
            "path": "/attributes/item_name",
            "value": [{"value": "Espresso cup, blue", "marketplace_id": DE}],
        },
    ],
}


@pytest.fixture
def gw(
    tmp_path: Path, pki: Pki, sandbox: Sandbox, seller_secret: Path
) -> Iterator[InThreadGateway]:
    env = gateway_env(
        pki,
        sandbox.base_url,
        seller_secret,
        tmp_path / "gw.sqlite",
        free_port(),
        PW_GATEWAY_LEDGER_FOLLOW="false",
    )
    gateway = InThreadGateway(in_thread_config(env), settings_for(tmp_path)).start()
    try:
        with trust(pki.ca_file):
            yield gateway
    finally:
        gateway.stop()


def _only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    return events[0]


def test_token_exchange_is_lwa_shaped_and_recorded(
    gw: InThreadGateway, tmp_path: Path, pki: Pki
) -> None:
    import ssl
    import urllib.parse
    import urllib.request

    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-api")
    form = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token,
        }
    ).encode()
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with urllib.request.urlopen(f"{gw.url}/auth/o2/token", data=form, context=context) as response:
        answer = orjson.loads(response.read())
    assert answer["token_type"] == "bearer" and answer["expires_in"] == gw.config.token_ttl
    assert (
        answer["access_token"].startswith("Atza|")
        and answer["refresh_token"] == creds.refresh_token
    )
    login = _only([e for e in gw.events if e["action"] == "auth.login"])
    assert login["actor"] == {
        "type": "provider",
        "provider_id": "prov-003",
        "principal_id": "prov-003-api",
    }
    assert login["outcome"] == "success" and login["account_id"] == ACCOUNT

    bad = form.replace(b"client_secret=pw.secret.", b"client_secret=pw.secret.x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{gw.url}/auth/o2/token", data=bad, context=context)
    assert refused.value.code == 400
    assert orjson.loads(refused.value.read())["error"] == "invalid_grant"
    failed = [e for e in gw.events if e["action"] == "auth.login" and e["outcome"] == "failure"]
    assert len(failed) == 1 and failed[0]["actor"]["principal_id"] == "prov-003-api"
    assert not gw.rejected


def test_saleweaver_listings_patch_put_delete(
    gw: InThreadGateway, tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import ListingsItems

    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-user-1")
    client = saleweaver(ListingsItems, gw.url, creds, pki.ca_file, version="2021-08-01")

    # The gateway knows the price it last saw: read the listing first (20.00 in the fixture).
    seen = client.get_listings_item(
        SELLER_ID, "MUG-1", marketplaceIds=[DE], includedData=["attributes"]
    )
    assert seen.payload["sku"] == "MUG-1"
    patched = client.patch_listings_item(SELLER_ID, "MUG-1", body=PRICE_PATCH, marketplaceIds=[DE])
    assert patched.payload["status"] == "ACCEPTED"
    put = client.put_listings_item(
        SELLER_ID,
        "MUG-2",
        marketplaceIds=[DE],
        body={
            "productType": "PRODUCT",
            "requirements": "LISTING_OFFER_ONLY",
            "attributes": {
                "fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7}]
            },
        },
    )
    assert put.payload["submissionId"] == "pw-submission-put-0001"
    deleted = client.delete_listings_item(SELLER_ID, "MUG-3", marketplaceIds=[DE])
    assert deleted.payload["status"] == "ACCEPTED"

    price = _only(gw.of("patchListingsItem"))
    assert price["action"] == "listing.price_change" and price["marketplace"] == "DE"
    assert price["changes"][0] == {"field": "price", "old": "20", "new": "17.49"}
    assert price["changes"][1]["field"] == "item_name"
    assert price["resource"] == {"type": "listing", "id": "MUG-1"}
    assert (
        price["origin"]["submission_id"] == "pw-submission-patch-0001"
        and price["origin"]["status"] == 200
    )
    assert (
        price["actor"]["principal_id"] == "prov-003-user-1" and price["source"]["ip"] == "127.0.0.1"
    )
    assert "python-sp-api" in price["source"]["user_agent"]
    inventory = _only(gw.of("putListingsItem"))
    assert inventory["action"] == "inventory.update"
    assert inventory["changes"] == [{"field": "quantity", "old": None, "new": 7}]
    assert _only(gw.of("deleteListingsItem"))["action"] == "listing.delete"
    assert _only(gw.of("getListingsItem"))["action"] == "data.read"

    # Amazon saw the seller's token, never the provider's.
    assert {c.token for c in sandbox.calls()} <= sandbox.tokens
    assert all(not c.token.startswith("Atza|pw.") for c in sandbox.calls())
    assert len(sandbox.calls("patchListingsItem")) == 1
    assert not gw.rejected


def test_validation_preview_and_a_refused_sku(
    gw: InThreadGateway, tmp_path: Path, pki: Pki
) -> None:
    from sp_api.api import ListingsItems
    from sp_api.base import SellingApiException

    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-user-1")
    client = saleweaver(ListingsItems, gw.url, creds, pki.ca_file, version="2021-08-01")
    preview = client.patch_listings_item(
        SELLER_ID, "PW-PREVIEW", body=PRICE_PATCH, marketplaceIds=[DE], mode="VALIDATION_PREVIEW"
    )
    assert preview.payload["status"] == "VALID"
    with pytest.raises(SellingApiException):
        client.patch_listings_item(SELLER_ID, "PW-BAD", body=PRICE_PATCH, marketplaceIds=[DE])
    first, second = gw.of("patchListingsItem")
    assert first["action"] == "data.read" and first["origin"]["mode"] == "VALIDATION_PREVIEW"
    assert second["action"] == "listing.price_change" and second["outcome"] == "failure"
    assert second["origin"]["status"] == 400
    assert not gw.rejected


def test_json_listings_feed_expands_every_message(
    gw: InThreadGateway, tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import Feeds

    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-feeds")
    client = saleweaver(Feeds, gw.url, creds, pki.ca_file)
    feed = {
        "header": {"sellerId": SELLER_ID, "version": "2.0", "issueLocale": "de_DE"},
        "messages": [
            {
                "messageId": 1,
                "sku": "MUG-1",
                "operationType": "PATCH",
                "productType": "PRODUCT",
                "patches": PRICE_PATCH["patches"][:1],
            },
            {
                "messageId": 2,
                "sku": "MUG-2",
                "operationType": "PATCH",
                "productType": "PRODUCT",
                "patches": [
                    {
                        "op": "replace",
                        "path": "/attributes/fulfillment_availability",
                        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 0}],
                    }
                ],
            },
            {"messageId": 3, "sku": "MUG-3", "operationType": "DELETE"},
            {
                "messageId": 4,
                "sku": "MUG-4",
                "operationType": "UPDATE",
                "productType": "PRODUCT",
                "requirements": "LISTING",
                "attributes": {"item_name": [{"value": "Saucer"}]},
            },
        ],
    }
    document, result = client.submit_feed(
        "JSON_LISTINGS_FEED",
        io.StringIO(orjson.dumps(feed).decode()),
        content_type="application/json",
        marketplaceIds=[DE],
    )
    assert result.payload["feedId"] == "pw-feed-0001"
    # The upload went through the gateway to the (stand-in) pre-signed URL, unchanged.
    assert orjson.loads(sandbox.documents["pw-feed-document-0001"]) == feed
    assert "/_pw/documents/" in document.payload["url"]

    messages = gw.of("createFeed")
    assert [m["action"] for m in messages] == [
        "listing.price_change",
        "inventory.update",
        "listing.delete",
        "listing.update",
    ]
    assert [m["resource"]["id"] for m in messages] == ["MUG-1", "MUG-2", "MUG-3", "MUG-4"]
    assert [m["origin"]["message_id"] for m in messages] == [1, 2, 3, 4]
    assert len({m["event_id"] for m in messages}) == 4
    assert all(m["origin"]["submission_id"] == "pw-feed-0001" for m in messages)
    assert messages[0]["changes"][0]["new"] == "17.49"
    assert _only(gw.of("createFeedDocument"))["action"] == "data.read"
    assert not gw.rejected


def test_reports_schedule_rdt_and_download(
    gw: InThreadGateway, tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import Reports, Tokens

    creds = issue(gw.config.store_path(tmp_path), "prov-003", "prov-003-reports")
    reports = saleweaver(Reports, gw.url, creds, pki.ca_file)
    created = reports.create_report(
        reportType="GET_FLAT_FILE_ACTIONABLE_ORDER_DATA_SHIPPING", marketplaceIds=[DE]
    )
    report = reports.get_report(created.payload["reportId"])
    document_id = report.payload["reportDocumentId"]
    tokens = saleweaver(Tokens, gw.url, creds, pki.ca_file)
    rdt = tokens.create_restricted_data_token(
        restrictedResources=[
            {"method": "GET", "path": f"/reports/2021-06-30/documents/{document_id}"}
        ]
    )
    handle = rdt.payload["restrictedDataToken"]
    assert (
        handle.startswith("Atz.sprdt|pw.")
        and handle != "Atz.sprdt|pw-fixture-restricted-data-token"
    )

    sandbox.documents["pw-report-document-0001"] = b"order-id\tbuyer-name\n123-1\tJ. Doe\n"
    restricted = saleweaver(Reports, gw.url, creds, pki.ca_file, restricted_data_token=handle)
    downloaded = restricted.get_report_document(document_id, download=True)
    assert "J. Doe" in downloaded.payload["document"]
    schedule = reports.create_report_schedule(
        reportType="GET_MERCHANT_LISTINGS_ALL_DATA", period="PT12H", marketplaceIds=[DE]
    )
    assert schedule.payload["reportScheduleId"] == "pw-report-schedule-0001"

    request = _only(gw.of("createReport"))
    assert (
        request["action"] == "report.request" and request["origin"]["sensitivity"] == "restricted"
    )
    download = _only(gw.of("getReportDocument"))
    assert download["action"] == "report.download"
    assert download["resource"] == {
        "type": "report",
        "id": "GET_FLAT_FILE_ACTIONABLE_ORDER_DATA_SHIPPING",
    }
    assert download["origin"]["sensitivity"] == "restricted"
    assert _only(gw.of("createRestrictedDataToken"))["action"] == "permission.data_token"
    standing = _only(gw.of("createReportSchedule"))
    assert standing["action"] == "report.schedule" and standing["origin"]["sensitivity"] == "bulk"
    # The real RDT went to Amazon only: the download call carried it upstream.
    assert (
        sandbox.calls("getReportDocument")[0].token == "Atz.sprdt|pw-fixture-restricted-data-token"
    )
    assert not gw.rejected


def test_official_sdk_price_patch_and_payout(gw: InThreadGateway, tmp_path: Path, pki: Pki) -> None:
    from spapi.api.listings_items_v2021_08_01.listings_api import ListingsApi
    from spapi.api.transfers_v2024_06_01.transfers_api import TransfersApi

    creds = issue(gw.config.store_path(tmp_path), "prov-007", "prov-007-sdk")
    listings = official(ListingsApi, gw.url, creds, pki.ca_file)
    answer = listings.patch_listings_item(SELLER_ID, "MUG-9", [DE], PRICE_PATCH)
    assert answer.status == "ACCEPTED"
    transfers = official(TransfersApi, gw.url, creds, pki.ca_file)
    payout = transfers.initiate_payout({"marketplaceId": DE, "accountType": "Standard Orders"})
    assert payout.payout_reference_id == "pw-payout-reference-0001"

    price = _only(gw.of("patchListingsItem"))
    assert price["action"] == "listing.price_change" and price["actor"]["provider_id"] == "prov-007"
    assert price["changes"][0] == {"field": "price", "old": None, "new": "17.49"}
    funds = _only(gw.of("initiatePayout"))
    assert funds["action"] == "funds.disbursement_request" and funds["marketplace"] == "DE"
    assert funds["origin"]["submission_id"] == "pw-payout-reference-0001"
    assert "amount" not in funds
    assert not gw.rejected


def test_unknown_revoked_and_suspended_tokens(
    gw: InThreadGateway, tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import Sellers
    from sp_api.base import SellingApiException

    store_path = gw.config.store_path(tmp_path)
    creds = issue(store_path, "prov-009", "prov-009-user")
    client = saleweaver(Sellers, gw.url, creds, pki.ca_file)
    assert client.get_marketplace_participation().payload[0]["marketplace"]["countryCode"] == "DE"
    from sources.gateway.store import Store

    Store(store_path).suspend("prov-009", "owner", "test")
    before = len(sandbox.calls())
    with pytest.raises(SellingApiException) as refused:
        client.get_marketplace_participation()
    assert refused.value.code == 403
    assert len(sandbox.calls()) == before  # Amazon never saw it
    denied = [e for e in gw.events if e["outcome"] == "denied"]
    assert len(denied) == 1 and "suspended" in denied[0]["origin"]["reason"]
    assert not gw.rejected


def test_events_wait_in_the_store_when_the_broker_is_away(
    gw: InThreadGateway, tmp_path: Path, pki: Pki
) -> None:
    from sp_api.api import Sellers

    from sources.gateway.store import Store

    creds = issue(gw.config.store_path(tmp_path), "prov-010", "prov-010-user")
    gw.fail_emit = True
    saleweaver(Sellers, gw.url, creds, pki.ca_file).get_marketplace_participation()
    queued = Store(gw.config.store_path(tmp_path)).queued()
    assert {orjson.loads(q[2])["action"] for q in queued} == {"auth.login", "data.read"}
    assert not gw.events


def test_an_alert_route_suspends_the_provider(
    gw: InThreadGateway, tmp_path: Path, pki: Pki, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert feed's own webhook output, routed to the gateway, pulls the kill switch."""
    import time

    import httpx
    from sp_api.api import Sellers
    from sp_api.base import SellingApiException

    from sinks.alert_outputs.webhook import WebhookOutput

    gw.gateway.alert_secret = "route-secret"
    creds = issue(gw.config.store_path(tmp_path), "prov-011", "prov-011-user")
    client = saleweaver(Sellers, gw.url, creds, pki.ca_file)
    client.get_marketplace_participation()
    alert = {
        "alert_id": "a-1",
        "detector": "price_change_over_limit",
        "severity": "high",
        "account_id": ACCOUNT,
        "provider_id": "prov-011",
        "principal_id": "prov-011-user",
        "title": "Provider prov-011 cut the price of MUG-1 by 75%",
    }

    def deliver(secret: str, doc: dict[str, Any]) -> httpx.Response:
        request = WebhookOutput("kill-switch", f"{gw.url}/_pw/alerts", secret).render(
            doc, time.time()
        )
        with httpx.Client(verify=pki.client_context()) as http:
            return http.post(request.url, content=request.body, headers=request.headers)

    assert deliver("wrong-secret", alert).status_code == 401
    assert deliver("route-secret", {**alert, "severity": "medium"}).json()["suspended"] is None
    assert (
        deliver("route-secret", {**alert, "account_id": "A0002OTHER"}).json()["suspended"] is None
    )
    client.get_marketplace_participation()  # still allowed
    answer = deliver("route-secret", alert)
    assert answer.status_code == 200 and answer.json()["suspended"] == "prov-011"
    before = len(sandbox.calls())
    with pytest.raises(SellingApiException) as refused:
        client.get_marketplace_participation()
    assert refused.value.code == 403 and len(sandbox.calls()) == before
    suspension = _only([e for e in gw.events if e["action"] == "permission.suspend"])
    assert suspension["resource"] == {"type": "provider", "id": "prov-011"}
    assert suspension["origin"]["detector"] == "price_change_over_limit"
    assert not gw.rejected
