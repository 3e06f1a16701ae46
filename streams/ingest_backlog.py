"""How far ingest has got on each actions partition, for the provider stage's merge.

The provider stage (streams/provider_stage.py) holds back a ledger partition while its ingest
has a backlog: the worker group's committed offset on the actions partition behind the end the
partition had at the previous look (`BACKLOG_SECONDS` before). Not behind the end as it is now:
under live traffic there are nearly always a few events on their way through ingest (fetched,
in a batch, in a transaction not yet committed), and holding the merge for them made every
provider-wide alert wait for the slowest partition's next transaction (docs/performance.md,
"Event-to-alert latency"). Ingest that has not worked through what was there a look ago is
catching up, and that is what the hold is for.

Each look also reads the ledger partitions' last stable offsets, after the group's offsets: a
transaction that commits a partition's last records and its source offset together (the end of
a backlog) is then known to have left committed ledger records the stage has not fetched yet,
even before the stage's own next fetch says so. Without it, ingest that had just caught up was
no longer behind, the stage's last fetch had seen none of its ledger records, and the merge
folded the other partitions up to an hour of event time ahead (`partnerwatch evaluate`'s
provider-wide alert ids differed from the replay's in 2 of 10 runs; 0 of 20 with the look). The
broker writes a transaction's commit markers partition by partition, so a look can still fall
between the source offset's and the ledger's: a window of a few milliseconds, not none.
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
        #: each ledger partition's last stable offset at the last look (after the group's offsets)
        self.ledger_ends: dict[int, int] = {}
        self._at = 0.0
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Which actions partitions ingest has not consumed up to where their end was at the
        previous look (asked every `BACKLOG_SECONDS`; at the first look, or the first after a
        pause, the end now), and where the ledger partitions' committed records end after the
        group's offsets were read (`consumer` reads committed records: its end offsets are the
        last stable ones); on an error, none of either (the merge then goes by its fetches
        alone)."""
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
            # After the group's offsets: a source offset read as committed comes with its
            # transaction's ledger records, which this end then covers.
            ledger = [TopicPartition(s.ledger_topic, p) for p in partitions]
            ledger_end = await consumer.end_offsets(ledger)
        except KafkaError as exc:
            log.warning("provider_stage.backlog_unknown", error=str(exc))
            self.partitions = set()
            self.ledger_ends = {}
            return
        self.ledger_ends = {tp.partition: ledger_end[tp] for tp in ledger}
        self.partitions = behind(
            {tp.partition: end[tp] for tp in tps},
            self.ends,
            {tp.partition: offsets[tp].offset for tp in tps if tp in offsets},
        )
        self.ends = {tp.partition: end[tp] for tp in tps}

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
