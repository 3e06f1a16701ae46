"""The live alert feed inside the worker: one tailing reader of pw.alerts, fanned out to subscribers.

One aiokafka consumer with no group (it commits nothing and never slows detection) reads the
alerts topic from its end, `read_committed`, on the worker's event loop, and offers every record
to each subscriber's bounded queue. A subscriber whose queue is full is marked overflowed and
gets nothing more: its connection tells the client it was too slow and closes; the client
resumes from its last event id, so nothing is lost and memory stays bounded.

Positions. Every SSE event names the stream position just after it as a vector of per-partition
next offsets, `o0.o1.o2...` (e.g. `12.0.4.9`): resuming from it reads each partition from
exactly there, so a client that reconnects gets every record it had not seen, once. Records a
filter skipped are read and filtered again on resume, which changes nothing. `0` is "from the
beginning" (missing partitions count as offset 0).

Catch-up. A resuming subscriber first joins the fan-out (remembering where the tailer stands,
`start`), then reads each partition from its resume offset up to `start` with a consumer of its
own, then continues with its queue, skipping what it already has. Alerts that arrive while it
reads wait in its queue; if more arrive than the queue holds (a burst, or a tailer that was behind
the topic when the client came), that is not the client being slow: the subscriber is re-armed at
the tailer's new position and reads on to there (`replay`), up to `CATCH_UP_ROUNDS` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from pipeline.config import Settings
from pipeline.contract import SEVERITIES
from sinks.kafka_io import aio_consumer
from streams.faust_internals import fetch_cluster_metadata

log = structlog.get_logger(__name__)

#: alert ids the feed has seen, for the lifecycle API before the warehouse stores them
KNOWN_ALERTS = 50_000
#: a catch-up read that makes no progress for this long gives up (the client may retry)
CATCH_UP_STALL_SECONDS = 30.0
#: reads of history a resuming subscriber may need before its queue keeps up; after them it is
#: told it is too slow (and resumes again, losing nothing)
CATCH_UP_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class FeedRecord:
    partition: int
    offset: int
    alert: dict[str, Any]


@dataclass(frozen=True)
class AlertFilter:
    """Minimum severity, and accounts and detectors (empty: any)."""

    min_severity: str = "info"
    accounts: frozenset[str] = frozenset()
    detectors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise ValueError(
                f"severity must be one of {', '.join(SEVERITIES)}, not {self.min_severity!r}"
            )

    def matches(self, alert: dict[str, Any]) -> bool:
        severity = alert.get("severity")
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
        return (
            rank >= SEVERITIES.index(self.min_severity)
            and (not self.accounts or alert.get("account_id") in self.accounts)
            and (not self.detectors or alert.get("detector") in self.detectors)
        )


def parse_position(text: str, partitions: int) -> list[int]:
    """`12.0.4.9` -> [12, 0, 4, 9], padded with 0 to `partitions`; ValueError when malformed."""
    parts = text.strip().split(".")
    if len(parts) > partitions or not all(p.isdigit() and len(p) <= 19 for p in parts):
        raise ValueError(
            f"Last-Event-ID must be per-partition offsets like 12.0.4.9 (at most {partitions}), not {text[:80]!r}"
        )
    offsets = [int(p) for p in parts]
    return offsets + [0] * (partitions - len(offsets))


def format_position(offsets: Iterable[int]) -> str:
    return ".".join(str(o) for o in offsets)


@dataclass(eq=False)
class Subscriber:
    """One live connection: its filter, its bounded queue, where the fan-out started for it."""

    filter: AlertFilter
    start: list[int]
    queue: asyncio.Queue[FeedRecord] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def offer(self, record: FeedRecord) -> None:
        if self.overflowed or not self.filter.matches(record.alert):
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.overflowed = True  # the connection notices, tells the client and closes


class AlertFeed(Service):
    """The tailing reader and its subscribers (a service of the worker)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self.partitions = 0
        self.positions: list[int] = []
        self.subscribers: set[Subscriber] = set()
        self.known: OrderedDict[str, str] = OrderedDict()
        self.closing = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._task = asyncio.ensure_future(self._tail())

    async def on_stop(self) -> None:
        self.closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def subscribe(self, alert_filter: AlertFilter) -> Subscriber:
        """Join the fan-out; `start` is where this subscriber's queue begins, per partition."""
        sub = Subscriber(
            alert_filter, list(self.positions), asyncio.Queue(self.settings.sse_queue_size)
        )
        self.subscribers.add(sub)
        return sub

    def rearm(self, sub: Subscriber) -> None:
        """Empty an overflowed subscriber's queue and start it again where the tailer stands (what
        it dropped is on the topic, before its new `start`)."""
        sub.queue = asyncio.Queue(self.settings.sse_queue_size)
        sub.start = list(self.positions)
        sub.overflowed = False

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def account_of(self, alert_id: str) -> str:
        return self.known.get(alert_id, "")

    def _consumer(self) -> AIOKafkaConsumer:
        return aio_consumer(self.settings, role="live-alert-feed")

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.settings.alerts_topic
        while True:  # the worker creates the topic as it starts
            cluster = await fetch_cluster_metadata(consumer)
            found = cluster.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await asyncio.sleep(0.5)

    async def _tail(self) -> None:
        while not self.closing:
            consumer = self._consumer()
            try:
                await consumer.start()
                tps = await self._partitions(consumer)
                consumer.assign(tps)
                if not self._ready.is_set():
                    await consumer.seek_to_end(*tps)
                    self.positions = [await consumer.position(tp) for tp in tps]
                    self.partitions = len(tps)
                    self._ready.set()
                    log.info("alert_feed.ready", positions=format_position(self.positions))
                else:  # restarted after an error: continue exactly where the fan-out stood
                    for tp in tps:
                        consumer.seek(
                            tp,
                            self.positions[tp.partition] if tp.partition < self.partitions else 0,
                        )
                while not self.closing:
                    batch = await consumer.getmany(timeout_ms=500, max_records=20)
                    import os; await asyncio.sleep(float(os.environ.get("PW_X_TAIL_DELAY", "0")))
                    for tp, records in batch.items():
                        for r in records:
                            self._fan_out(FeedRecord(tp.partition, r.offset, orjson.loads(r.value)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker trouble: log, wait, reconnect
                log.error("alert_feed.error", error=str(exc))
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def _fan_out(self, record: FeedRecord) -> None:
        if record.partition >= len(self.positions):
            self.positions.extend([0] * (record.partition + 1 - len(self.positions)))
        self.positions[record.partition] = record.offset + 1
        alert_id = record.alert.get("alert_id")
        if isinstance(alert_id, str):
            self.known[alert_id] = str(record.alert.get("account_id", ""))
            self.known.move_to_end(alert_id)
            if len(self.known) > KNOWN_ALERTS:
                self.known.popitem(last=False)
        for sub in list(self.subscribers):
            sub.offer(record)

    async def replay(self, sub: Subscriber, resume: list[int]) -> AsyncGenerator[FeedRecord, None]:
        """Every committed record from `resume` up to where `sub`'s queue begins, in order per
        partition. When the queue overflowed during a read, it is re-armed and the read goes on
        to its new start; after `CATCH_UP_ROUNDS` reads it is left overflowed (the connection then
        tells the client it is too slow)."""
        position = list(resume) + [0] * max(0, len(sub.start) - len(resume))
        for done in range(1, CATCH_UP_ROUNDS + 1):
            until = list(sub.start)
            async with contextlib.aclosing(self.catch_up(position, until)) as records:
                async for record in records:
                    position[record.partition] = record.offset + 1
                    yield record
            if not sub.overflowed or done == CATCH_UP_ROUNDS:
                return
            self.rearm(sub)
            log.info("alert_feed.catch_up_again", round=done + 1, until=format_position(sub.start))

    async def catch_up(
        self, resume: list[int], until: list[int]
    ) -> AsyncGenerator[FeedRecord, None]:
        """Every committed record from `resume` up to (not including) `until`, per partition."""
        topic = self.settings.alerts_topic
        wanted = {
            p: (resume[p], until[p])
            for p in range(min(len(resume), len(until)))
            if resume[p] < until[p]
        }
        if not wanted:
            return
        consumer = self._consumer()
        await consumer.start()
        try:
            tps = {p: TopicPartition(topic, p) for p in wanted}
            consumer.assign(list(tps.values()))
            for p, (begin, _) in wanted.items():
                consumer.seek(tps[p], begin)
            progress = time.monotonic()
            while wanted:
                batch = await consumer.getmany(*[tps[p] for p in wanted], timeout_ms=500)
                for tp, records in batch.items():
                    end = wanted.get(tp.partition, (0, 0))[1]
                    for r in records:
                        if r.offset < end:
                            yield FeedRecord(tp.partition, r.offset, orjson.loads(r.value))
                    progress = time.monotonic()
                for p in list(wanted):
                    if await consumer.position(tps[p]) >= wanted[p][1]:
                        del wanted[p]
                if wanted and time.monotonic() - progress > CATCH_UP_STALL_SECONDS:
                    raise TimeoutError(f"catch-up read stalled on partitions {sorted(wanted)}")
        finally:
            await consumer.stop()
