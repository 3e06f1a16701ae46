"""Consumer lag per partition, as Prometheus gauges, refreshed by a timer of the worker.

Three consumer groups read the pipeline's topics: the ingest service (`<PW_APP_ID>-ingest`:
actions), the worker's Faust agents (`PW_APP_ID`: alerts, dead letters) and the warehouse loader
(`<PW_APP_ID>-warehouse`: ledger and alerts). Every `LAG_INTERVAL_SECONDS` the timer asks the broker for each partition's end
(the last stable offset: the loader reads committed records only) and for each group's committed
offsets, and sets `pw_consumer_lag_messages` / `pw_warehouse_lag_messages` {topic, partition}.

Asking the broker (not the worker's own fetch positions) keeps the figure true when the worker
has stopped fetching, e.g. while the warehouse is down and the loader holds its batch. Every
worker reports the whole group's lag, so with several workers aggregate with `max by (topic,
partition)`. Offsets count transaction markers too: a transactional topic at rest shows a lag of
1 (the marker after the last committed record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from mode import Service

from pipeline.config import Settings
from sinks import metrics
from sinks.kafka_io import aio_admin, aio_consumer
from streams.app import app, settings

log = structlog.get_logger(__name__)

LAG_INTERVAL_SECONDS = 10.0
_TIMEOUT = 10.0


def lag(
    end: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
    beginning: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Offsets left to consume per partition; a group that never committed starts at the beginning."""
    result: dict[TopicPartition, int] = {}
    for tp, last in end.items():
        position = committed.get(tp)
        if position is None or position < 0:
            position = beginning.get(tp, 0)
        result[tp] = max(0, last - position)
    return result


class ConsumerLag(Service):
    """Refreshes the lag gauges of both consumer groups."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        super().__init__(**kwargs)

    @property
    def groups(self) -> list[tuple[str, list[str], Any]]:
        s = self.settings
        return [
            (s.ingest_group, [s.actions_topic], metrics.CONSUMER_LAG),
            (s.worker_group, [s.alerts_topic, s.deadletter_topic], metrics.CONSUMER_LAG),
            (s.warehouse_group, [s.ledger_topic, s.alerts_topic], metrics.WAREHOUSE_LAG),
        ]

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None:
            consumer = aio_consumer(self.settings, role="consumer-lag")
            await consumer.start()
            self._consumer = consumer
        if self._admin is None:
            admin = aio_admin(self.settings, role="consumer-lag")
            await admin.start()
            self._admin = admin
        return self._consumer, self._admin

    async def refresh(self) -> None:
        consumer, admin = await self._clients()
        topics = sorted({t for _, group_topics, _ in self.groups for t in group_topics})
        tps = [TopicPartition(t, p) for t in topics for p in range(self.settings.topic_partitions)]
        end = await asyncio.wait_for(consumer.end_offsets(tps), _TIMEOUT)
        beginning = await asyncio.wait_for(consumer.beginning_offsets(tps), _TIMEOUT)
        for group, group_topics, gauge in self.groups:
            offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), _TIMEOUT)
            committed = {tp: meta.offset for tp, meta in offsets.items()}
            mine = {tp: end[tp] for tp in tps if tp.topic in group_topics}
            for tp, value in lag(mine, committed, beginning).items():
                gauge.labels(tp.topic, str(tp.partition)).set(value)

    @Service.timer(LAG_INTERVAL_SECONDS)
    async def _refresh(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # a metrics timer must never take the worker down
            log.warning("lag.refresh_failed", error=f"{type(exc).__name__}: {exc}")


consumer_lag = ConsumerLag(settings)
app.service(consumer_lag)  # type: ignore[arg-type]  # Faust accepts instances too
