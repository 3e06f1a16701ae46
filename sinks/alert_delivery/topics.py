"""Topics of the alert feed: `Settings.alerts_topic` (read) and `Settings.parked_topic` (dead letters)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from pipeline.config import Settings
from sinks.kafka_io import ensure_topics


def ensure_feed_topics(settings: Settings) -> None:
    """Create the pipeline topics and the parked topic if missing (the admin client only: the
    feed's consumers are aiokafka)."""
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_broker, client_id="partnerwatch-alert-feed-admin")
    try:
        if settings.parked_topic not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(settings.parked_topic, num_partitions=settings.topic_partitions, replication_factor=1)]
                )
    finally:
        admin.close()
