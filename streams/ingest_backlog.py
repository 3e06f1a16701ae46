"""How far ingest has got on each actions partition, for the provider stage's merge.

The provider stage (streams/provider_stage.py) holds back a ledger partition while its ingest
has a backlog: the worker group's committed offset on the actions partition behind the end the
partition had at the previous look (`BACKLOG_SECONDS` before). Not behind the end as it is now:
under live traffic there are nearly always a few events on their way through ingest (fetched,
in a batch, in a transaction not yet committed), and holding the merge for them made every
provider-wide alert wait for the slowest partition's next transaction (docs/performance.md,
"Event-to-alert latency"). Ingest that has not worked through what was there a look ago is
catching up, and that is what the hold is for.

A partition that stops being behind (behind at the previous look, or this is the first look
since the start or a pause, and not behind now) has its ledger partition's last stable offset
read too, after the group's offsets (`ledger_ends`): the transaction that committed its last
source offset committed its ledger records with it, and the merge waits until it has fetched up
to there. Without it, ingest that had just caught up was no longer behind while the stage's last
fetch had seen none of its ledger records, and the merge folded the other partitions up to an
hour of event time ahead (`partnerwatch evaluate`'s provider-wide alert ids differed from the
replay's in 2 of 10 runs). The broker writes a transaction's commit markers partition by
partition, so a look can still fall between the source offset's and the ledger's: a window of
a few milliseconds, not none. A partition that stays behind, or never is, costs no more than
before; under live traffic at half the maximum rate ingest still falls behind now and then
(a trace at 6,300 events/s: 12 catch-ups in 30 s, each wait ended by the next fetch within
0.2-5.7 ms), and after the stage was idle for over two looks every partition counts as caught
up once (a first look).
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
        #: ledger partition -> the last stable offset read when its ingest stopped being behind
        #: (after the group's offsets): the merge waits to have fetched up to it (`reached`)
        self.ledger_ends: dict[int, int] = {}
        self._at = 0.0
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self, consumer: AIOKafkaConsumer, partitions: list[int]) -> None:
        """Which actions partitions ingest has not consumed up to where their end was at the
        previous look (asked every `BACKLOG_SECONDS`; at the first look, or the first after a
        pause, the end now), and for those that stopped being behind, where their ledger
        partitions' committed records end (`consumer` reads committed records: its end offsets
        are the last stable ones); on an error, none is behind (the merge then goes by its
        fetches alone) and the ledger ends read before stay (they are facts)."""
        now = time.monotonic()
        if now < self._at + BACKLOG_SECONDS:
            return
        if now > self._at + 2 * BACKLOG_SECONDS:  # not looked at lately (idle): from now on
            self.ends = {}
        first = not self.ends
        self._at = now
        s = self.settings
        try:
            if self._admin is None:
                self._admin = aio_admin(s, role="provider-stage")
                await self._admin.start()
            tps = [TopicPartition(s.actions_topic, p) for p in partitions]
            end = await consumer.end_offsets(tps)
            offsets = await self._admin.list_consumer_group_offsets(s.ingest_group, partitions=tps)
            now_behind = behind(
                {tp.partition: end[tp] for tp in tps},
                self.ends,
                {tp.partition: offsets[tp].offset for tp in tps if tp in offsets},
            )
            caught_up = [
                p for p in partitions if p not in now_behind and (first or p in self.partitions)
            ]
            # After the group's offsets: a source offset read as committed came with its
            # transaction's ledger records, which this end then covers.
            ledger = [TopicPartition(s.ledger_topic, p) for p in caught_up]
            ledger_end = await consumer.end_offsets(ledger) if ledger else {}
        except KafkaError as exc:
            log.warning("provider_stage.backlog_unknown", error=str(exc))
            self.partitions = set()
            self.ends = {}  # the next look is a first look: what caught up meanwhile counts
            return
        for tp in ledger:
            self.ledger_ends[tp.partition] = max(
                ledger_end[tp], self.ledger_ends.get(tp.partition, 0)
            )
        self.partitions = now_behind
        self.ends = {tp.partition: end[tp] for tp in tps}

    def reached(self, partition: int, position: int) -> bool:
        """Whether the stage, at `position` of the ledger partition, has fetched up to where its
        ingest's catching up ended (`ledger_ends`; forgotten once reached)."""
        end = self.ledger_ends.get(partition)
        if end is None or position >= end:
            self.ledger_ends.pop(partition, None)
            return True
        return False

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
