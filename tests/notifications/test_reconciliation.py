"""Changes around the gateway, found: the real gateway, the real poller, notifications through
ElasticMQ, against a sandbox upstream whose state changes, and the detectors as the worker runs
them (`detectors.run.observe`, every event in arrival order).

- A price changed through the gateway, then reported by Amazon (notification and poll), raises
  nothing; the same kind of change made directly on the upstream raises `change_outside_gateway`
  naming the observation (the poll's or the notification's event).
- A bank account changed on the upstream raises it on the next poll.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig, Settings
from pipeline.event import normalize
from sources.gateway.lwa import SellerCredentials, SellerTokens
from sources.notifications.events import Target
from sources.notifications.seen import Seen
from sources.notifications.sqs import SqsReader
from sources.polling.client import SpApi
from sources.polling.config import PollConfig
from sources.polling.poller import Account, Poller
from sources.polling.store import Snapshots
from tests.gateway.harness import (
    ACCOUNT,
    DE,
    SELLER,
    SELLER_ID,
    InThreadGateway,
    free_port,
    gateway_env,
    in_thread_config,
    issue,
    saleweaver,
    trust,
)
from tests.gateway.test_enforce import price_patch
from tests.notifications.harness import new_queue, queue_depth, sqs_client
from tests.notifications.upstream import StatefulSandbox

DETECTOR = "change_outside_gateway"


@dataclass
class Ledger:
    """The detectors over every event in arrival order, as the worker's ingest agent runs them."""

    state: dict[str, Any] = field(default_factory=new_state)
    events: list[dict[str, Any]] = field(default_factory=list)
    findings: list[tuple[Finding, dict[str, Any]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def add(self, raw: list[dict[str, Any]]) -> list[Finding]:
        new = []
        for event in raw:
            stored = normalize(orjson.loads(orjson.dumps(event)))
            if stored["event_id"] in self.ids:  # the ledger's dedup
                continue
            self.ids.add(stored["event_id"])
            self.events.append(stored)
            for finding in observe(self.state, stored, DetectionConfig()):
                self.findings.append((finding, stored))
                new.append(finding)
        return new

    def outside(self) -> list[Finding]:
        return [f for f, _ in self.findings if f.detector == DETECTOR]


@dataclass
class World:
    upstream: StatefulSandbox
    gateway: InThreadGateway
    poller: Poller
    reader: SqsReader
    sqs: Any
    queue: str
    ledger: Ledger
    emitted: list[dict[str, Any]]
    gateway_url: str
    creds: Any
    ca_file: Path
    session: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop

    def gateway_events(self) -> list[Finding]:
        fresh = self.gateway.events[
            len([e for e in self.ledger.events if e["event_id"].startswith("gw-")]) :
        ]
        return self.ledger.add(list(fresh))

    def poll(self) -> tuple[list[dict[str, Any]], list[Finding]]:
        self.emitted.clear()
        self.loop.run_until_complete(self.poller.poll_once())
        polled = list(self.emitted)
        return polled, self.ledger.add(polled)

    def notifications(self) -> tuple[list[dict[str, Any]], list[Finding]]:
        self.emitted.clear()

        async def drain() -> None:
            while await self.reader.once() or queue_depth(self.sqs, self.queue) != (0, 0):
                pass

        self.loop.run_until_complete(drain())
        received = list(self.emitted)
        return received, self.ledger.add(received)


@pytest.fixture
def world(upstream: StatefulSandbox, pki: Any, elasticmq: str, tmp_path: Path) -> Iterator[World]:
    secret = tmp_path / "seller.json"
    secret.write_bytes(orjson.dumps(SELLER))
    # no ledger view (it is not used in observe mode): this test does not use the broker
    env = gateway_env(
        pki,
        upstream.base_url,
        secret,
        tmp_path / "gateway.sqlite",
        free_port(),
        PW_GATEWAY_LEDGER_FOLLOW="false",
    )
    gateway = InThreadGateway(
        in_thread_config(env), Settings.from_env({"PW_DATA_DIR": str(tmp_path)})
    ).start()
    creds = issue(tmp_path / "gateway.sqlite", "prov-agency", "agency-bot")
    sqs = sqs_client(elasticmq)
    queue = new_queue(sqs, visibility=5)
    upstream.notify = lambda n: sqs.send_message(
        QueueUrl=queue, MessageBody=orjson.dumps(n).decode()
    )
    emitted: list[dict[str, Any]] = []

    async def emit(events: list[dict[str, Any]]) -> None:
        emitted.extend(events)

    loop = asyncio.new_event_loop()
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    session = loop.run_until_complete(_session(context))
    tokens = SellerTokens(
        SellerCredentials(**SELLER), f"{upstream.base_url}/auth/o2/token", session
    )
    api = SpApi(upstream.base_url, tokens, session)
    poller = Poller(
        Account(ACCOUNT, SELLER_ID, ["DE"]),
        api,
        Snapshots(tmp_path / "polling.sqlite"),
        emit,
        PollConfig(seller_id=SELLER_ID),
    )
    reader = SqsReader(
        sqs,
        queue,
        emit,
        Seen(tmp_path / "seen.sqlite"),
        Target(ACCOUNT, "DE"),
        wait_seconds=1,
        visibility_seconds=5,
    )
    ledger = Ledger()
    # the seller's grant: the agency may work on DE listings (other detectors stay quiet)
    ledger.add(
        [
            {
                "event_id": "seller-grant-1",
                "occurred_at": "2026-01-01T00:00:00Z",
                "account_id": ACCOUNT,
                "action": "permission.grant",
                "actor": {"type": "seller", "principal_id": "owner"},
                "grant": {
                    "grant_id": "g-1",
                    "provider_id": "prov-agency",
                    "scopes": ["listing.*", "inventory.*", "data.read"],
                    "marketplaces": ["DE"],
                    "max_price_change_pct": 50,
                },
            }
        ]
    )
    try:
        yield World(
            upstream,
            gateway,
            poller,
            reader,
            sqs,
            queue,
            ledger,
            emitted,
            gateway.url,
            creds,
            pki.ca_file,
            session,
            loop,
        )
    finally:
        loop.run_until_complete(session.close())
        loop.close()
        gateway.stop()


async def _session(context: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


def test_a_price_change_around_the_gateway_is_found_and_one_through_it_is_not(world: World) -> None:
    from sp_api.api import ListingsItems

    world.upstream.add_listing("MUG-1", "DE", "B0PWMUG001", 24.99, 40)
    baseline, found = world.poll()
    assert baseline == [] and found == []

    # Through the gateway: the agency's own tool lowers the price by 20%.
    with trust(world.ca_file):
        client = saleweaver(
            ListingsItems, world.gateway_url, world.creds, world.ca_file, version="2021-08-01"
        )
        assert (
            client.patch_listings_item(
                SELLER_ID, "MUG-1", body=price_patch(19.99), marketplaceIds=[DE]
            ).payload["status"]
            == "ACCEPTED"
        )
    assert world.upstream.listings["MUG-1", "DE"].price == 19.99
    assert world.gateway_events() == []
    notified, found = world.notifications()
    assert [e["action"] for e in notified] == ["listing.price_observed"] and found == []
    polled, found = world.poll()
    assert [(e["action"], e["changes"][0]["new"]) for e in polled] == [
        ("listing.price_observed", "19.99")
    ]
    assert found == [] and world.ledger.outside() == []

    # Around it: someone in Seller Central cuts the price to 4.99.
    world.upstream.seller_central_price("MUG-1", "DE", 4.99)
    notified, found_by_notification = world.notifications()
    polled, found_by_poll = world.poll()
    assert [(e["action"], e["changes"][0]["old"], e["changes"][0]["new"]) for e in polled] == [
        ("listing.price_observed", "19.99", "4.99")
    ]
    outside = [f for f in found_by_notification + found_by_poll if f.detector == DETECTOR]
    assert len(outside) == 1, [f.summary for f in outside]
    alert = outside[0]
    observation = notified[0] if found_by_notification else polled[0]
    assert observation["event_id"] in alert.summary
    assert "MUG-1" in alert.summary and "19.99" in alert.summary and "4.99" in alert.summary
    assert "agency-bot" in alert.summary  # the nearest gateway call on it, for the investigator
    # the poll's later observation of the same change does not raise a second alert
    assert len(world.ledger.outside()) == 1


def test_a_bank_account_changed_on_the_upstream_raises_on_the_next_poll(world: World) -> None:
    world.upstream.seller_central_bank_account("DE", "677")
    assert world.poll() == ([], [])
    polled, found = world.poll()
    assert polled == [] and found == []  # nothing changed: nothing to say
    world.upstream.seller_central_bank_account("DE", "912")
    polled, found = world.poll()
    actions = sorted(e["action"] for e in polled)
    assert actions == [
        "funds.bank_account_change",
        "funds.bank_account_change",
    ]  # a new one, the old one's default moved
    outside = [f for f in found if f.detector == DETECTOR]
    assert outside and all(f.severity == "critical" for f in outside)
    assert any(e["event_id"] in outside[0].summary for e in polled)
    # the tails only: the ingest agent masks them further (funds.bank_account_change)
    assert "***912" in orjson.dumps(polled).decode()
