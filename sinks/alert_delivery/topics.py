"""Topics of the alert feed: pw.alerts (read) and `<prefix>alerts.parked` (dead letters)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.config import Settings
from sinks.kafka_io import ensure_topics


def parked_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}alerts.parked"


def ensure_feed_topics(settings: Settings) -> None:
    """Create the pipeline topics and the parked topic if missing (the admin client only: the
    feed's consumers are aiokafka)."""
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_broker, client_id="partnerwatch-alert-feed-admin")
    try:
        if parked_topic(settings) not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(parked_topic(settings), num_partitions=settings.topic_partitions, replication_factor=1)]
                )
    finally:
        admin.close()
