"""Notifications through a real SQS stand-in (ElasticMQ) into the real worker's ledger.

- Every notification (Amazon's schema examples where ../shared is present, the project's own
  fixtures always), plus injected duplicates, goes through the queue and reaches the ledger
  exactly once; the queue ends empty.
- A message is never deleted before its events are stored in Kafka: the reader, a real
  `partnerwatch notifications run` process, is SIGKILLed while its delete is held (after Kafka
  acknowledged, before SQS deleted); the message comes back and the ledger still has it once.
- When Kafka does not acknowledge, nothing is deleted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.gateway import KafkaEmitter
from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import checkout
from sources.notifications import parse
from sources.notifications.events import Target, to_events
from sources.notifications.seen import Seen
from sources.notifications.sqs import SqsReader
from tests.notifications.harness import (
    ACCOUNT,
    HoldingProxy,
    amazon_examples,
    new_queue,
    own_fixtures,
    queue_depth,
    sqs_client,
    wire,
)

pytestmark = pytest.mark.integration
TARGET = Target(ACCOUNT, "DE")


@pytest.fixture(scope="module")
def pipeline(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    ns = Namespace(tmp_path_factory.mktemp("notifications"))
    worker = Worker(ns).start()
    try:
        yield ns
    finally:
        worker.stop()


def ledger_ids(ns: Namespace, expect: int, timeout: float = 120.0) -> Counter[str]:
    """Event ids on the account's ledger, read until `expect` entries arrived (or time ran out)."""
    deadline = time.monotonic() + timeout
    seen: Counter[str] = Counter()
    while time.monotonic() < deadline:
        records = ns.read_topic(ns.settings.ledger_topic, expect, timeout=5)
        seen = Counter(orjson.loads(r.value)["event_id"] for r in records)
        if sum(seen.values()) >= expect:
            break
    return seen


def drain(reader: SqsReader, sqs: Any, url: str, timeout: float = 120.0) -> None:
    async def main() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await reader.once() == 0 and queue_depth(sqs, url) == (0, 0):
                return
        raise AssertionError(f"queue not drained: {queue_depth(sqs, url)}, {reader.counts}")

    asyncio.run(main())


def test_every_notification_reaches_the_ledger_once(
    pipeline: Namespace, elasticmq: str, tmp_path: Path
) -> None:
    sqs = sqs_client(elasticmq)
    url = new_queue(sqs)
    notifications = [n for _, n in own_fixtures()] + [n for _, n in amazon_examples()]
    bodies = [wire(n) for n in notifications]
    # injected duplicates: SQS's at-least-once delivery, and Amazon sending one again
    bodies += [bodies[0], bodies[3], bodies[-1], bodies[-1]]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    expected = {
        e["event_id"] for body in set(bodies) for e in to_events(parse.from_bytes(body), TARGET, 0)
    }
    assert len(expected) >= len(notifications)

    emitter = KafkaEmitter(pipeline.settings)
    try:
        reader = SqsReader(
            sqs,
            url,
            emitter.emit,
            Seen(tmp_path / "seen.sqlite"),
            TARGET,
            wait_seconds=1,
            visibility_seconds=30,
        )
        drain(reader, sqs, url)
    finally:
        emitter.close()
    assert reader.counts["duplicates"] == 4
    assert reader.counts["events"] == len(expected)
    stored = ledger_ids(pipeline, len(expected))
    amazon = {k: v for k, v in stored.items() if k.startswith("amzn-")}
    assert set(amazon) == expected
    assert all(v == 1 for v in amazon.values()), [k for k, v in amazon.items() if v > 1]


def test_a_reader_killed_between_kafka_and_delete_loses_and_duplicates_nothing(
    pipeline: Namespace, elasticmq: str, tmp_path: Path
) -> None:
    sqs = sqs_client(elasticmq)
    url = new_queue(sqs, visibility=3)
    (_, notification), *_ = own_fixtures()
    body = wire(
        {
            **notification,
            "NotificationMetadata": {
                **notification["NotificationMetadata"],
                "NotificationId": f"pw-kill-{time.time_ns()}",
            },
        }
    )
    sqs.send_message(QueueUrl=url, MessageBody=body)
    event_id = to_events(parse.from_bytes(body), TARGET, 0)[0]["event_id"]

    proxy = HoldingProxy(elasticmq).start()
    env = {
        **pipeline.env,
        "PW_NOTIFY_ACCOUNT_ID": ACCOUNT,
        "PW_NOTIFY_DEFAULT_MARKETPLACE": "DE",
        "PW_NOTIFY_SQS_QUEUE_URL": url,
        "PW_SQS_ENDPOINT_URL": proxy.url,
        "PW_NOTIFY_SQS_WAIT_SECONDS": "1",
        "PW_NOTIFY_SQS_VISIBILITY_SECONDS": "3",
        "PW_NOTIFY_STORE": str(tmp_path / "killed.sqlite"),
    }
    log = (tmp_path / "reader.log").open("wb")
    reader = subprocess.Popen(
        [sys.executable, "-m", "partnerwatch", "notifications", "run"],
        env=env,
        cwd=checkout(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proxy.delete_requested.wait(90), (tmp_path / "reader.log").read_text()
        # The delete was asked for: the event must already be in Kafka, the message still queued.
        actions = pipeline.read_topic(pipeline.settings.actions_topic, 1, timeout=30)
        assert event_id in {orjson.loads(r.value)["event_id"] for r in actions}
        assert sum(queue_depth(sqs, url)) == 1
        os.killpg(reader.pid, signal.SIGKILL)
        reader.wait(30)
    finally:
        if reader.poll() is None:
            os.killpg(reader.pid, signal.SIGKILL)
            reader.wait(30)
        proxy.stop()
        log.close()
    assert sum(queue_depth(sqs, url)) == 1, "the killed reader's message is gone"

    # A new reader, with none of the old one's memory: the message comes back after the
    # visibility timeout, is sent again under the same event id, and deleted this time.
    emitter = KafkaEmitter(pipeline.settings)
    try:
        again = SqsReader(
            sqs,
            url,
            emitter.emit,
            Seen(tmp_path / "fresh.sqlite"),
            TARGET,
            wait_seconds=1,
            visibility_seconds=3,
        )
        drain(again, sqs, url)
    finally:
        emitter.close()
    assert again.counts.get("events") == 1
    sent = Counter(
        orjson.loads(r.value)["event_id"]
        for r in pipeline.read_topic(pipeline.settings.actions_topic, 10_000, timeout=5)
    )
    assert sent[event_id] == 2
    wait_for(
        lambda: ledger_ids(pipeline, 1, timeout=5)[event_id] >= 1, 60, "the event on the ledger"
    )
    assert ledger_ids(pipeline, 1, timeout=5)[event_id] == 1


def test_nothing_is_deleted_while_kafka_does_not_acknowledge(
    elasticmq: str, tmp_path: Path
) -> None:
    sqs = sqs_client(elasticmq)
    url = new_queue(sqs, visibility=1)
    (_, notification), *_ = own_fixtures()
    sqs.send_message(QueueUrl=url, MessageBody=wire(notification))
    attempts = []

    async def broker_away(events: list[dict[str, Any]]) -> None:
        attempts.append(len(events))
        raise ConnectionError("no broker (test)")

    seen = Seen(tmp_path / "seen.sqlite")
    failing = SqsReader(sqs, url, broker_away, seen, TARGET, wait_seconds=1, visibility_seconds=1)
    for _ in range(2):  # received, not acknowledged, visible again, received again
        with pytest.raises(ConnectionError):
            wait_for(lambda: asyncio.run(failing.once()) > 0, 30, "a message received")
    assert attempts == [1, 1] and seen.count() == 0
    assert sum(queue_depth(sqs, url)) == 1

    stored: list[dict[str, Any]] = []

    async def broker_back(events: list[dict[str, Any]]) -> None:
        stored.extend(events)

    drain(
        SqsReader(sqs, url, broker_back, seen, TARGET, wait_seconds=1, visibility_seconds=1),
        sqs,
        url,
    )
    assert [e["action"] for e in stored] == ["listing.status_change"]
