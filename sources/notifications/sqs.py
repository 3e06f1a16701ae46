"""Notifications from an SQS standard queue: long polling, deleted only after Kafka has the events.

One cycle: receive up to `max_messages` (waiting up to `wait_seconds` for the first), parse each
body into its events, send them all through `emit` (which returns once Kafka acknowledged every
one), remember their identities, and only then delete the messages. If `emit` fails (the broker
is away) nothing is deleted: the messages become visible again after the visibility timeout and
are read again. If the process dies after `emit` but before the delete, the same happens, and the
repeat carries the same event ids, which the ledger stores once.

Repeats (SQS delivers at least once; Amazon may send again) are recognised by the
notification's identity (`parse.Notification.identity`: its NotificationId with its content)
and deleted without being sent again. A body that is not a notification at all is kept as a
`notification.received` event saying why (evidence that something arrived), then deleted.

boto3 is synchronous: its calls run in a worker thread, so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from sources.notifications import parse
from sources.notifications.config import NotifyConfig
from sources.notifications.events import Target, to_events, unreadable_event
from sources.notifications.seen import Seen

log = structlog.get_logger(__name__)

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]


def client(config: NotifyConfig) -> Any:
    """A boto3 SQS client for the configured endpoint (a local one gets dummy credentials)."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "region_name": config.sqs_region,
        "config": Config(
            read_timeout=config.sqs_wait_seconds + 10,
            connect_timeout=10,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    }
    if config.sqs_endpoint_url:
        options["endpoint_url"] = config.sqs_endpoint_url
        session = boto3.session.Session()
        if session.get_credentials() is None:
            # ElasticMQ takes any credentials; botocore needs some to sign with (S106: not a secret).
            options.update(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
    return boto3.client("sqs", **options)


class SqsReader:
    """Reads one queue until stopped; `counts` says what it did."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        emit: Emit,
        seen: Seen,
        target: Target,
        *,
        wait_seconds: int = 20,
        visibility_seconds: int = 60,
        max_messages: int = 10,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.emit = emit
        self.seen = seen
        self.target = target
        self.wait_seconds = wait_seconds
        self.visibility_seconds = visibility_seconds
        self.max_messages = max_messages
        self.counts: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    async def run(self, stop: asyncio.Event, backoff: float = 2.0) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # SQS or Kafka away: wait, the messages come back
                self._count("errors")
                log.warning("notifications.sqs_cycle_failed", error=str(exc)[:500])
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)

    async def once(self) -> int:
        """One receive, send, delete cycle; the number of messages received."""
        answer = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.max_messages,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_seconds,
            AttributeNames=["All"],
        )
        messages = answer.get("Messages") or []
        if not messages:
            return 0
        self._count("received", len(messages))
        received_ms = time.time_ns() // 1_000_000
        events: list[dict[str, Any]] = []
        identities: list[str] = []
        batch: set[str] = set()
        for message in messages:
            identity, produced = self._events(message, received_ms)
            if identity in batch or self.seen.has(identity):
                self._count("duplicates")
                continue
            batch.add(identity)
            identities.append(identity)
            events.extend(produced)
        if events:
            await self.emit(events)  # raises when Kafka did not acknowledge: nothing is deleted
            self._count("events", len(events))
        if identities:
            self.seen.mark(identities)
        await self._delete(messages)
        return len(messages)

    def _events(
        self, message: dict[str, Any], received_ms: int
    ) -> tuple[str, list[dict[str, Any]]]:
        body = message.get("Body", "")
        raw = body.encode() if isinstance(body, str) else bytes(body)
        message_id = str(message.get("MessageId", ""))
        attributes = message.get("Attributes") or {}
        try:
            notification = parse.from_bytes(raw)
        except parse.NotANotification as exc:
            self._count("unreadable")
            identity = "unreadable:" + hashlib.sha256(raw).hexdigest()
            return identity, [unreadable_event(raw, str(exc), self.target, message_id, received_ms)]
        extra: dict[str, Any] = {"sqs_message_id": message_id[:128]}
        count = attributes.get("ApproximateReceiveCount")
        if isinstance(count, str) and count.isdigit():
            extra["sqs_receive_count"] = int(count)
        return notification.identity, to_events(notification, self.target, received_ms, extra)

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if m.get("ReceiptHandle")
        ]
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            answer = await asyncio.to_thread(
                self.sqs.delete_message_batch, QueueUrl=self.queue_url, Entries=chunk
            )
            failed = answer.get("Failed") or []
            self._count("deleted", len(chunk) - len(failed))
            if failed:  # they come back after the visibility timeout; then they are repeats
                self._count("delete_failed", len(failed))
                log.warning("notifications.sqs_delete_failed", failed=len(failed))


def queue_url(sqs: Any, config: NotifyConfig) -> str:
    """The configured queue's URL (a bare name is looked up)."""
    name = config.sqs_queue_url
    if name.startswith(("http://", "https://")):
        return name
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
