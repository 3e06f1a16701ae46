"""How far ingest has got on each actions partition, for the provider stage's merge.

The provider stage (streams/provider_stage.py) holds back a ledger partition while its ingest
has a backlog: the worker group's committed offset on the actions partition behind its end.
"""

from __future__ import annotations

import time

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from pipeline.config import Settings
from sinks.kafka_io import aio_admin

log = structlog.get_logger("streams.provider_stage")

#: How often the merge asks the broker how far ingest has got on each actions partition.
BACKLOG_SECONDS = 0.2


class IngestBacklog:
    """The actions partitions ingest has not consumed to the end, asked every `BACKLOG_SECONDS`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions: set[int] = set()
        self._at = 0.0
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Which actions partitions ingest has not consumed to the end (asked every
        `BACKLOG_SECONDS`); on an error, none (the merge then goes by the ledger alone)."""
        if time.monotonic() < self._at + BACKLOG_SECONDS:
            return
        self._at = time.monotonic()
        s = self.settings
        try:
            if self._admin is None:
                self._admin = aio_admin(s, role="provider-stage")
                await self._admin.start()
            tps = [TopicPartition(s.actions_topic, p) for p in partitions]
            end = await consumer.end_offsets(tps)
            offsets = await self._admin.list_consumer_group_offsets(s.ingest_group, partitions=tps)
        except KafkaError as exc:
            log.warning("provider_stage.backlog_unknown", error=str(exc))
            self.partitions = set()
            return
        self.partitions = {
            tp.partition
            for tp in tps
            if end[tp] > max(0, offsets[tp].offset if tp in offsets else 0)
        }

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
