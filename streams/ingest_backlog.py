"""How far ingest has got on each actions partition, for the provider stage's merge.

The provider stage (streams/provider_stage.py) holds back a ledger partition while its ingest
has a backlog: the worker group's committed offset on the actions partition behind the end the
partition had at the previous look (`BACKLOG_SECONDS` before). Not behind the end as it is now:
under live traffic there are nearly always a few events on their way through ingest (fetched,
in a batch, in a transaction not yet committed), and holding the merge for them made every
provider-wide alert wait for the slowest partition's next transaction (docs/performance.md,
"Event-to-alert latency"). Ingest that has not worked through what was there a look ago is
catching up, and that is what the hold is for.
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


def behind(ends: dict[int, int], previous: dict[int, int], committed: dict[int, int]) -> set[int]:
    """The partitions whose committed offset (none: 0) is behind their end at the previous look
    (`previous`; a partition not looked at before: its end now, `ends`)."""
    return {
        p for p, end in ends.items() if min(end, previous.get(p, end)) > max(0, committed.get(p, 0))
    }


class IngestBacklog:
    """The actions partitions ingest is catching up on, asked every `BACKLOG_SECONDS`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions: set[int] = set()
        #: each actions partition's end offset at the previous look
        self.ends: dict[int, int] = {}
        self._at = 0.0
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Which actions partitions ingest has not consumed up to where their end was at the
        previous look (asked every `BACKLOG_SECONDS`; at the first look, or the first after a
        pause, the end now); on an error, none (the merge then goes by the ledger alone)."""
        now = time.monotonic()
        if now < self._at + BACKLOG_SECONDS:
            return
        if now > self._at + 2 * BACKLOG_SECONDS:  # not looked at lately (idle): from now on
            self.ends = {}
        self._at = now
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
        self.partitions = behind(
            {tp.partition: end[tp] for tp in tps},
            self.ends,
            {tp.partition: offsets[tp].offset for tp in tps if tp in offsets},
        )
        self.ends = {tp.partition: end[tp] for tp in tps}

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
