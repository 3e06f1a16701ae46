"""`partnerwatch demo --amazon`: the gateway, notifications and polling, and an agency gone rogue.

Everything runs locally: Kafka and ElasticMQ (the project's runners), the worker, a stand-in for
Amazon (partnerwatch/amazon_sandbox.py, HTTPS), the SP-API gateway in front of it, the
notification reader on an ElasticMQ queue Amazon's stand-in sends to, and the poller. The
agency works through the gateway with python-amazon-sp-api (the dev extra), then turns rogue:
once through the gateway (a 70% price cut: recorded, attributed, alerted), once around it (a
price cut in "Seller Central" and a new bank account: found by notifications and polling, and
alerted as `change_outside_gateway`). Alerts print live (`alerts tail`); then the kill switch
suspends the agency and its next call is refused before Amazon.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.common import elasticmq_runner, err, kafka_runner
from pipeline.event import format_ms

ACCOUNT = "A0001SELLER"
SELLER_ID = "A1PWDEMOSELLER"
DE = "A1PA6795UKMFR9"


def _price_patch(price: float) -> dict[str, Any]:
    return {
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
                        "our_price": [{"schedule": [{"value_with_tax": price}]}],
                    }
                ],
            }
        ],
    }


class _Loop:
    """An asyncio loop in a thread of its own, running the demo's long-lived services."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="demo-services"
        )
        self.thread.start()

    def spawn(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        time.sleep(1.5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def run_demo(settings: Any, wait_worker: Any) -> int:
    try:
        from sp_api.api import ListingsItems
        from sp_api.auth import AccessTokenClient
        from sp_api.base import Marketplaces, SellingApiException
    except ImportError:
        err.print(
            "[red]the provider tools of this demo come with the dev extra: pip install 'partnerwatch[dev]'[/]"
        )
        return 2
    from partnerwatch.amazon import serve_notifications, serve_polling
    from partnerwatch.amazon_sandbox import SELLER_APP, DemoAmazon, make_tls
    from partnerwatch.gateway import KafkaEmitter
    from partnerwatch.local_worker import free_port
    from sources.gateway.config import GatewayConfig
    from sources.gateway.service import serve
    from sources.gateway.store import Store
    from sources.notifications.config import NotifyConfig
    from sources.notifications.sqs import client
    from sources.polling.config import PollConfig

    if (
        kafka_runner(settings, "start") != 0
        or elasticmq_runner("start", NotifyConfig.from_env().sqs_endpoint_url) != 0
    ):
        err.print("[red]could not start the local Kafka broker or ElasticMQ[/]")
        return 1
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the SP-API client logs every request
    work = Path(tempfile.mkdtemp(prefix="pw-demo-amazon-"))
    ca, cert, key = make_tls(work / "tls")
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = str(ca)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "worker.log"
    err.print(f"starting the worker (log: {log_path})")
    with log_path.open("ab") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "worker"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    services = _Loop()
    emitter = KafkaEmitter(settings)
    amazon: DemoAmazon | None = None
    tail: subprocess.Popen[bytes] | None = None
    try:
        wait_worker(settings, worker)
        endpoint = NotifyConfig.from_env().sqs_endpoint_url or "http://127.0.0.1:9324"
        sqs = client(NotifyConfig(sqs_endpoint_url=endpoint))
        queue = sqs.create_queue(QueueName=f"pw-demo-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        amazon = DemoAmazon(
            SELLER_ID,
            lambda n: sqs.send_message(QueueUrl=queue, MessageBody=orjson.dumps(n).decode()),
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        amazon.start(context, free_port())
        for n, (sku, asin, price) in enumerate(
            (
                ("MUG-1", "B0PWMUG001", 24.99),
                ("MUG-2", "B0PWMUG002", 19.99),
                ("TEE-1", "B0PWTEE001", 14.5),
            )
        ):
            amazon.add_listing(sku, "DE", asin, price, 40 + n)
        amazon.seller_central_bank_account("DE", "677")
        secret = work / "seller-app.json"
        secret.write_bytes(orjson.dumps(SELLER_APP))
        secret.chmod(0o600)
        gateway = GatewayConfig.from_env(
            {},
            account_id=ACCOUNT,
            port=free_port(),
            tls_cert=str(cert),
            tls_key=str(key),
            upstream_url=amazon.base_url,
            lwa_url=f"{amazon.base_url}/auth/o2/token",
            upstream_ca_file=str(ca),
            seller_secret_file=str(secret),
            store=str(work / "gateway.sqlite"),
            default_marketplace="DE",
        )
        notify = NotifyConfig(
            account_id=ACCOUNT,
            default_marketplace="DE",
            sqs_queue_url=queue,
            sqs_endpoint_url=endpoint,
            sqs_wait_seconds=1,
            sqs_visibility_seconds=10,
            store=str(work / "notifications.sqlite"),
        )
        poll = PollConfig(
            seller_id=SELLER_ID,
            marketplaces="DE",
            interval_seconds=3,
            store=str(work / "polling.sqlite"),
        )
        services.spawn(serve(gateway, settings, emitter.emit, stop=services.stop))
        services.spawn(serve_notifications(notify, settings, emitter.emit, stop=services.stop))
        services.spawn(serve_polling(settings, gateway, poll, emitter.emit, stop=services.stop))
        _grant(emitter, services)
        tail = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "alerts", "tail", "--from-now"]
        )
        time.sleep(6)  # the gateway reads the ledger, the poller takes its baseline

        store = Store(gateway.store_path(settings.data_dir))
        creds = store.issue("prov-agency", "agency-bot")
        token_client = type(
            "GatewayTokenClient",
            (AccessTokenClient,),
            {"host": f"127.0.0.1:{gateway.port}", "scheme": "https://", "path": "/auth/o2/token"},
        )
        listings = ListingsItems(
            marketplace=Marketplaces.DE,
            version="2021-08-01",
            auth_token_client_class=token_client,
            credentials={
                "lwa_app_id": creds.client_id,
                "lwa_client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token,
            },
            verify=ssl.create_default_context(cafile=str(ca)),
        )
        listings.endpoint = gateway.base_url

        err.print(
            "\n[bold]1. The agency works through the gateway:[/] MUG-1 from 24.99 to 23.99 (within its grant)"
        )
        listings.get_listings_item(
            SELLER_ID, "MUG-1", marketplaceIds=[DE], includedData=["attributes"]
        )
        listings.patch_listings_item(
            SELLER_ID, "MUG-1", body=_price_patch(23.99), marketplaceIds=[DE]
        )
        time.sleep(8)
        err.print(
            "[bold]2. The agency turns rogue, through the gateway:[/] MUG-2 from 19.99 to 5.99 (-70%)"
        )
        listings.get_listings_item(
            SELLER_ID, "MUG-2", marketplaceIds=[DE], includedData=["attributes"]
        )
        listings.patch_listings_item(
            SELLER_ID, "MUG-2", body=_price_patch(5.99), marketplaceIds=[DE]
        )
        time.sleep(8)
        err.print(
            "[bold]3. ... and around it, in Seller Central:[/] TEE-1 from 14.50 to 2.99, and a new bank account"
        )
        amazon.seller_central_price("TEE-1", "DE", 2.99)
        amazon.seller_central_bank_account("DE", "912")
        time.sleep(12)
        err.print("[bold]4. The kill switch:[/] partnerwatch provider suspend prov-agency")
        store.suspend("prov-agency", "owner", "demo: rogue agency")
        _suspend_event(emitter, services)
        try:
            listings.patch_listings_item(
                SELLER_ID, "MUG-1", body=_price_patch(1.0), marketplaceIds=[DE]
            )
            err.print("[red]the call went through?[/]")
        except SellingApiException as exc:
            err.print(f"   the agency's next call: HTTP {exc.code}, refused before Amazon")
        store.close()
        time.sleep(6)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if tail is not None:
            tail.terminate()
            tail.wait(10)
        services.close()
        emitter.close()
        if amazon is not None:
            amazon.stop()
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        err.print(
            "worker stopped; ElasticMQ and Kafka keep running (partnerwatch elasticmq stop, partnerwatch kafka stop)"
        )


def _send(emitter: Any, services: _Loop, event: dict[str, Any]) -> None:
    services.spawn(emitter.emit([event])).result(30)


def _grant(emitter: Any, services: _Loop) -> None:
    _send(
        emitter,
        services,
        {
            "event_id": f"demo-grant-{uuid.uuid4().hex[:8]}",
            "occurred_at": format_ms(time.time_ns() // 1_000_000),
            "account_id": ACCOUNT,
            "action": "permission.grant",
            "actor": {"type": "seller", "principal_id": "owner"},
            "grant": {
                "grant_id": "g-agency",
                "provider_id": "prov-agency",
                "scopes": ["listing.*", "inventory.*", "data.read"],
                "marketplaces": ["DE"],
                "max_price_change_pct": 30,
            },
        },
    )


def _suspend_event(emitter: Any, services: _Loop) -> None:
    _send(
        emitter,
        services,
        {
            "event_id": f"demo-suspend-{uuid.uuid4().hex[:8]}",
            "occurred_at": format_ms(time.time_ns() // 1_000_000),
            "account_id": ACCOUNT,
            "action": "permission.suspend",
            "actor": {"type": "seller", "principal_id": "owner"},
            "operation": "partnerwatch provider suspend",
            "resource": {"type": "provider", "id": "prov-agency"},
            "origin": {"adapter": "partnerwatch-cli", "reason": "demo: rogue agency"},
        },
    )
