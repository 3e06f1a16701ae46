"""Producing to the pipeline's topics from outside the worker (simulator, file replay, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.config import Settings


def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline topics with the configured partition count; return those created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_broker, client_id="partnerwatch-admin")
    try:
        wanted = settings.pipeline_topics
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        window_ms = str(settings.dedup_window_days * 86_400_000)
        configs = {
            # The ledger is the sequencing state (streams/ingest.py): compacted by account once
            # older than the dedup window, so every account's chain head is kept forever.
            settings.ledger_topic: {"cleanup.policy": "compact", "min.compaction.lag.ms": window_ms},
            # Signatures of accepted signed HTTP requests (streams/web/signatures.py): needed for
            # one replay window; kept a day (or two windows), whichever is longer.
            settings.signatures_topic: {
                "cleanup.policy": "delete",
                "retention.ms": str(max(86_400, 2 * settings.ingest_hmac_window) * 1000),
            },
        }
        # one partition: every worker sees every claim in one order, so the first claim wins
        partitions = {settings.signatures_topic: 1}
        for topic in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=partitions.get(topic, settings.topic_partitions),
                            replication_factor=1,
                            topic_configs=configs.get(topic, {}),
                        )
                    ]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A producer for ingest traffic: acks from all replicas, idempotent, batched."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_broker,
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
        "max_request_size": 4 * 1024 * 1024,
        "client_id": "partnerwatch-producer",
    }
    config.update(options)
    return KafkaProducer(**config)


def action_key(event: dict[str, Any]) -> bytes:
    """Ingest messages are keyed by account, so each account's chain lives on one partition."""
    return str(event.get("account_id", "")).encode()


def send_events(
    settings: Settings, events: Iterable[dict[str, Any] | bytes], topic: str | None = None
) -> Iterator[int]:
    """Produce events (dicts, or raw message bytes) to pw.actions; yield a running count.

    Raw bytes are sent as they are (that is how bad input reaches the dead-letter topic); their
    key is the `account_id` when they parse, else empty.
    """
    target = topic or settings.actions_topic
    prod = producer(settings)
    try:
        for sent, item in enumerate(events, start=1):
            if isinstance(item, bytes):
                value = item
                try:
                    doc = orjson.loads(item)
                    key = action_key(doc) if isinstance(doc, dict) else b""
                except orjson.JSONDecodeError:
                    key = b""
            else:
                value, key = orjson.dumps(item), action_key(item)
            prod.send(target, key=key, value=value)
            yield sent
        prod.flush()
    finally:
        prod.close()
