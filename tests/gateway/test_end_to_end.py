"""The gateway as the seller runs it, end to end, through the real worker on the local broker.

`partnerwatch gateway run` (a child process, TLS with the test's own certificate) in front of
the sandbox upstream; the real worker behind it, in a namespace of its own. A rogue provider
drives its real clients through the gateway; then:
- every call appears exactly once in `audit.events`, with the right action and principal;
- the detectors an agency gone rogue should raise are raised;
- `partnerwatch provider suspend` cuts it off: the very next call gets 403, Amazon never sees
  it, and the suspension is in the ledger;
- a second gateway in enforce mode, which learned the seller's grant from the ledger the
  worker wrote, refuses an out-of-scope price change before Amazon.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, free_port, settled_alerts, wait_for
from pipeline.config import checkout
from tests.gateway.harness import (
    ACCOUNT,
    DE,
    SELLER_ID,
    GatewayProcess,
    gateway_env,
    saleweaver,
    trust,
)
from tests.gateway.pki import Pki
from tests.gateway.sandbox import Sandbox
from tests.gateway.test_calls import PRICE_PATCH
from tests.gateway.test_enforce import price_patch

pytestmark = pytest.mark.integration

GRANT = {
    "grant_id": "g-agency",
    "provider_id": "prov-rogue",
    "scopes": ["listing.*", "inventory.update", "data.read", "report.request"],
    "marketplaces": ["DE"],
    "max_price_change_pct": 30,
}


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=checkout(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_rogue_provider_through_the_gateway(
    kafka_broker: str, tmp_path: Path, pki: Pki, sandbox: Sandbox, seller_secret: Path
) -> None:
    from sp_api.api import Feeds, ListingsItems, Reports, Tokens
    from sp_api.api import Sellers as SellersApi
    from sp_api.base import SellingApiException
    from spapi.api.transfers_v2024_06_01.transfers_api import TransfersApi

    from sources.gateway.credentials import Issued
    from tests.gateway.harness import official

    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    store = tmp_path / "gateway.sqlite"
    env = {**ns.env, **gateway_env(pki, sandbox.base_url, seller_secret, store, free_port())}
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    enforcing: GatewayProcess | None = None
    try:
        # The seller grants the agency listings work on DE, through the worker into the ledger.
        ns.send(
            [
                {
                    "event_id": "seller-grant-1",
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "account_id": ACCOUNT,
                    "action": "permission.grant",
                    "actor": {"type": "seller", "principal_id": "owner"},
                    "grant": GRANT,
                }
            ]
        )
        gateway.start(pki.ca_file)
        url = f"https://127.0.0.1:{env['PW_GATEWAY_PORT']}"
        creds = Issued(
            **{
                k: v
                for k, v in orjson.loads(
                    cli(
                        env,
                        "gateway",
                        "credentials",
                        "issue",
                        "--provider",
                        "prov-rogue",
                        "--principal",
                        "rogue-bot",
                        "--json",
                    )
                ).items()
                if k in Issued.__dataclass_fields__
            }
        )
        sdk_creds = Issued(
            **{
                k: v
                for k, v in orjson.loads(
                    cli(
                        env,
                        "gateway",
                        "credentials",
                        "issue",
                        "--provider",
                        "prov-rogue",
                        "--principal",
                        "rogue-sdk",
                        "--json",
                    )
                ).items()
                if k in Issued.__dataclass_fields__
            }
        )

        expected: Counter[tuple[str, str, str]] = Counter()
        with trust(pki.ca_file):
            listings = saleweaver(ListingsItems, url, creds, pki.ca_file, version="2021-08-01")
            listings.get_listings_item(
                SELLER_ID, "MUG-1", marketplaceIds=[DE], includedData=["attributes"]
            )
            expected["getListingsItem", "data.read", "rogue-bot"] += 1
            listings.patch_listings_item(
                SELLER_ID, "MUG-1", body=price_patch(5.0), marketplaceIds=[DE]
            )  # -75%
            expected["patchListingsItem", "listing.price_change", "rogue-bot"] += 1
            listings.patch_listings_item(
                SELLER_ID, "MUG-2", body=PRICE_PATCH, marketplaceIds=["A1VC38T7YXB528"]
            )  # JP: not granted
            expected["patchListingsItem", "listing.price_change", "rogue-bot"] += 1
            listings.delete_listings_item(SELLER_ID, "MUG-3", marketplaceIds=[DE])
            expected["deleteListingsItem", "listing.delete", "rogue-bot"] += 1
            feed = {
                "header": {"sellerId": SELLER_ID, "version": "2.0"},
                "messages": [
                    {"messageId": 1, "sku": "MUG-4", "operationType": "DELETE"},
                    {
                        "messageId": 2,
                        "sku": "MUG-5",
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
                ],
            }
            saleweaver(Feeds, url, creds, pki.ca_file).submit_feed(
                "JSON_LISTINGS_FEED",
                io.StringIO(orjson.dumps(feed).decode()),
                content_type="application/json",
                marketplaceIds=[DE],
            )
            expected["createFeedDocument", "data.read", "rogue-bot"] += 1
            expected["createFeed", "listing.delete", "rogue-bot"] += 1
            expected["createFeed", "inventory.update", "rogue-bot"] += 1
            reports = saleweaver(Reports, url, creds, pki.ca_file)
            report_id = reports.create_report(
                reportType="GET_FLAT_FILE_ACTIONABLE_ORDER_DATA_SHIPPING", marketplaceIds=[DE]
            ).payload["reportId"]
            document_id = reports.get_report(report_id).payload["reportDocumentId"]
            expected["createReport", "report.request", "rogue-bot"] += 1
            expected["getReport", "data.read", "rogue-bot"] += 1
            rdt = (
                saleweaver(Tokens, url, creds, pki.ca_file)
                .create_restricted_data_token(
                    restrictedResources=[
                        {"method": "GET", "path": f"/reports/2021-06-30/documents/{document_id}"}
                    ]
                )
                .payload["restrictedDataToken"]
            )
            expected["createRestrictedDataToken", "permission.data_token", "rogue-bot"] += 1
            sandbox.documents["pw-report-document-0001"] = b"order-id\tbuyer-name\n"
            saleweaver(
                Reports, url, creds, pki.ca_file, restricted_data_token=rdt
            ).get_report_document(document_id, download=True)
            expected["getReportDocument", "report.download", "rogue-bot"] += 1
            official(TransfersApi, url, sdk_creds, pki.ca_file).initiate_payout(
                {"marketplaceId": DE, "accountType": "Standard Orders"}
            )
            expected["initiatePayout", "funds.disbursement_request", "rogue-sdk"] += 1
            expected["lwa.refresh_token", "auth.login", "rogue-bot"] += (
                1  # the client caches its token
            )
            expected["lwa.refresh_token", "auth.login", "rogue-sdk"] += 1

            # The kill switch: the CLI returns, and the very next call is refused.
            sellers = saleweaver(SellersApi, url, creds, pki.ca_file)
            sellers.get_marketplace_participation()
            expected["getMarketplaceParticipations", "data.read", "rogue-bot"] += 1
            cli(
                env,
                "provider",
                "suspend",
                "prov-rogue",
                "--reason",
                "price slashing",
                "--by",
                "owner",
            )
            seen = len(sandbox.calls())
            started = time.monotonic()
            with pytest.raises(SellingApiException) as refused:
                sellers.get_marketplace_participation()
            assert refused.value.code == 403 and time.monotonic() - started < 1.0
            assert len(sandbox.calls()) == seen
            expected["getMarketplaceParticipations", "data.read", "rogue-bot"] += 1

        total = sum(expected.values())
        query = (
            "SELECT operation, action, principal_id, count() FROM audit.events"
            " WHERE account_id = {account:String} AND actor_type = 'provider'"
            " GROUP BY operation, action, principal_id"
        )
        wait_for(
            lambda: sum(int(r[3]) for r in ns.sql(query, {"account": ACCOUNT})) >= total,
            180,
            f"{total} gateway events stored",
        )
        stored = Counter(
            {(r[0], r[1], r[2]): int(r[3]) for r in ns.sql(query, {"account": ACCOUNT})}
        )
        assert stored == expected
        outcomes = ns.sql(
            "SELECT outcome FROM audit.events WHERE operation = 'getMarketplaceParticipations' ORDER BY occurred_at"
        )
        assert [o[0] for o in outcomes] == ["success", "denied"]
        suspension = ns.sql(
            "SELECT action, actor_type, resource_id FROM audit.events WHERE action LIKE 'permission.suspend'"
        )
        assert suspension == [["permission.suspend", "seller", "prov-rogue"]]

        detectors = {
            a["detector"] for a in settled_alerts(ns).values() if a["account_id"] == ACCOUNT
        }
        assert {
            "price_change_over_limit",  # the 75% cut
            "listing_out_of_scope",  # JP is not in the grant
            "report_exfiltration",  # buyer addresses
            "provider_sensitive_action",  # a Restricted Data Token
            "funds_without_approval",  # a payout
        } <= detectors, detectors

        # Enforce mode, learning the grant (and the suspension, lifted again) from the ledger
        # the worker wrote.
        cli(env, "provider", "resume", "prov-rogue", "--by", "owner")
        resumed = "SELECT count() FROM audit.events WHERE action = 'permission.resume'"
        wait_for(lambda: ns.scalar(resumed) == 1, 60, "the resume in the ledger")
        enforce_env = {
            **env,
            **gateway_env(
                pki,
                sandbox.base_url,
                seller_secret,
                tmp_path / "enforcing.sqlite",
                free_port(),
                PW_GATEWAY_MODE="enforce",
            ),
        }
        enforcing = GatewayProcess(enforce_env, tmp_path / "enforcing.log").start(pki.ca_file)
        agency = Issued(
            **{
                k: v
                for k, v in orjson.loads(
                    cli(
                        enforce_env,
                        "gateway",
                        "credentials",
                        "issue",
                        "--provider",
                        "prov-rogue",
                        "--principal",
                        "rogue-bot-2",
                        "--json",
                    )
                ).items()
                if k in Issued.__dataclass_fields__
            }
        )
        before = len(sandbox.calls("patchListingsItem"))
        with trust(pki.ca_file):
            client = saleweaver(
                ListingsItems,
                f"https://127.0.0.1:{enforce_env['PW_GATEWAY_PORT']}",
                agency,
                pki.ca_file,
                version="2021-08-01",
            )
            with pytest.raises(SellingApiException) as denied:
                client.patch_listings_item(
                    SELLER_ID, "MUG-1", body=price_patch(5.0), marketplaceIds=[DE]
                )
            assert "75.0%, over the 30% limit" in denied.value.error[0]["details"]
            assert (
                client.patch_listings_item(
                    SELLER_ID, "MUG-1", body=price_patch(18.0), marketplaceIds=[DE]
                ).payload["status"]
                == "ACCEPTED"
            )
        assert len(sandbox.calls("patchListingsItem")) == before + 1  # only the allowed one
        assert worker.alive()
    finally:
        if enforcing is not None:
            enforcing.stop()
        gateway.stop()
        worker.stop()
