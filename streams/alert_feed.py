"""The live alert feed inside the worker: one tailing reader of pw.alerts, fanned out to subscribers.

One aiokafka consumer with no group (it commits nothing and never slows detection) reads the
alerts topic from its end, `read_committed`, on the worker's event loop, and offers every record
to each subscriber's bounded queue. A subscriber whose queue is full is marked overflowed and
gets nothing more from the fan-out until its connection has read what it missed from the topic
(below), so memory per client stays bounded and nothing is lost.

Positions. Every SSE event names the stream position just after it as a vector of per-partition
next offsets, `o0.o1.o2...` (e.g. `12.0.4.9`): resuming from it reads each partition from
exactly there, so a client that reconnects gets every record it had not seen, once. Records a
filter skipped are read and filtered again on resume, which changes nothing. `0` is "from the
beginning" (missing partitions count as offset 0).

Catch-up. A resuming subscriber joins the fan-out, then reads each partition from its resume
offset with a reader of its own (`catch_up`; a connection has at most one at a time) until it
is level with the tailer; there its queue is re-armed (emptied, starting where the
tailer stands) and the connection continues with it, skipping what it already sent.

Too slow, or only behind. A queue overflows when more alerts come than the connection has
written. What decides is whether the client reads. A write returns at once unless the socket's
buffers are full, when it waits for the client to read (the connection's writes do not give up
the event loop otherwise, and take at most `WRITE_CHUNK` bytes): one that waited
`SLOW_WRITE_SECONDS` means the client stopped reading. When that happened since the client was
last level with the tailer, an overflow makes it too slow (an `error` event, then the connection
closes; it resumes with its last id), and during a read of the topic it does at once. Otherwise
(the tailer hands over a whole fetch at once, or it was behind the topic when the client came)
the connection reads what it dropped from the topic, as a resuming client does, and the client
stays. A read of the topic whose distance to the topic's end has not shrunk in two
`CATCH_UP_PROGRESS_SECONDS` periods in a row makes the client too slow as well: it reads more
slowly than alerts come.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
#: a write that found the socket's buffers full and waited this long for the client: it stopped reading
SLOW_WRITE_SECONDS = 1.0
#: a connection reading the topic whose distance to the topic's end has not shrunk in two such
#: periods in a row reads more slowly than alerts come: the client is too slow
CATCH_UP_PROGRESS_SECONDS = 30.0
#: a reader's fetch per partition (aiokafka's default is 1 MiB): what a reader holds per client
CATCH_UP_FETCH_BYTES = 256 * 1024
#: records the tailer hands over per fetch (then the connections get a turn of the loop)
TAIL_BATCH = 500
#: bytes of queued events a connection writes at once: a write waits (when it waits) for the
#: client to take about this much, not a whole queue
WRITE_CHUNK = 64 * 1024


class Connection(Protocol):
    """One client's stream, as the delivery loop sees it (streams/web/alerts.py adapts aiohttp's)."""

    async def write(self, data: bytes) -> None:
        """Send, or raise when the client is gone (closing the connection). It returns without
        giving up the event loop unless the socket's buffers are full, when it waits for the
        client to read: so a write's time is the client's, not the loop's."""

    def closed(self) -> bool:
        """The client went away."""


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


def sse_event(record: FeedRecord, position: list[int]) -> bytes:
    """One alert as an SSE event whose id is the stream position just after it."""
    return (
        b"id: "
        + format_position(position).encode()
        + b"\nevent: alert\ndata: "
        + orjson.dumps(record.alert)
        + b"\n\n"
    )


def sse_error(message: str) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"error": message}) + b"\n\n"


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
                    batch = await consumer.getmany(timeout_ms=500, max_records=TAIL_BATCH)
                    for tp, records in batch.items():
                        for r in records:
                            self._fan_out(FeedRecord(tp.partition, r.offset, orjson.loads(r.value)))
                    self.partitions = max(self.partitions, len(self.positions))
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

    async def deliver(self, sub: Subscriber, resume: list[int] | None, conn: Connection) -> None:
        """Send `sub`'s alerts to one client until it goes, it is too slow, or the feed stops: first
        what it missed since `resume` (when given), then its queue; when the queue overflows, what
        it dropped, from the topic."""
        position = list(resume) if resume is not None else list(sub.start)
        stalled = False  # a write waited for the client (SLOW_WRITE_SECONDS) since it was level
        behind = resume is not None
        last_write = time.monotonic()
        tick = min(1.0, self.settings.sse_keepalive)

        def event(record: FeedRecord) -> bytes:
            """The record's event; `position` moves past it."""
            past(record)
            return sse_event(record, position)

        def past(record: FeedRecord) -> None:
            if record.partition >= len(position):
                position.extend([0] * (record.partition + 1 - len(position)))
            position[record.partition] = record.offset + 1

        async def write(data: bytes) -> None:
            nonlocal stalled, last_write
            began = time.monotonic()
            await conn.write(data)
            last_write = time.monotonic()
            stalled = stalled or last_write - began >= SLOW_WRITE_SECONDS

        async def too_slow(why: str) -> None:
            message = f"too slow: {why}; reconnect with Last-Event-ID to resume where it stopped"
            await conn.write(sse_error(message))
            log.warning("alert_feed.slow_subscriber_dropped", why=why)

        while not self.closing:
            if sub.overflowed:
                if stalled:
                    await too_slow(
                        f"more than {self.settings.sse_queue_size} alerts came while this client"
                        " did not read"
                    )
                    return
                behind = True  # the client reads: it catches up from the topic
            if behind:
                behind = False
                try:
                    records = self.catch_up(sub, list(position))
                    async with contextlib.aclosing(records):
                        async for record in records:
                            if sub.filter.matches(record.alert):
                                await write(event(record))
                                if stalled:
                                    await too_slow("this client stopped reading")
                                    return
                                continue
                            past(record)
                            if conn.closed():
                                return
                            if time.monotonic() - last_write >= self.settings.sse_keepalive:
                                await write(b": keep-alive\n\n")
                except FallingBehind as exc:
                    await too_slow(str(exc))
                    return
                except TimeoutError as exc:
                    await conn.write(sse_error(str(exc)))
                    return
                stalled = False  # level with the tailer
                continue
            try:
                record = await asyncio.wait_for(sub.queue.get(), tick)
            except TimeoutError:
                if conn.closed():
                    return
                if time.monotonic() - last_write >= self.settings.sse_keepalive:
                    await write(b": keep-alive\n\n")
                continue
            chunk = bytearray()  # what is queued goes in writes of up to WRITE_CHUNK bytes
            while True:
                if record.partition >= len(position) or record.offset >= position[record.partition]:
                    chunk += event(record)  # (else already sent from the topic)
                if len(chunk) >= WRITE_CHUNK or (sub.queue.empty() and chunk):
                    await write(bytes(chunk))
                    chunk.clear()
                if sub.queue.empty():
                    break
                record = sub.queue.get_nowait()
            if sub.queue.empty() and not sub.overflowed:
                stalled = False  # level with the tailer

    def open_reader(self, position: list[int]) -> TopicReader:
        return KafkaTopicReader(self.settings, position)

    def _level(self, at: list[int]) -> bool:
        return all(p < len(at) and at[p] >= tailer for p, tailer in enumerate(self.positions))

    async def catch_up(
        self, sub: Subscriber, position: list[int]
    ) -> AsyncGenerator[FeedRecord, None]:
        """Every committed record from `position` on, with a reader of its own, until it is level
        with the tailer; then `sub` is re-armed there (its queue continues right after)."""
        position = position + [0] * (len(self.positions) - len(position))
        if self._level(position):
            self.rearm(sub)  # nothing to read (no await since the check)
            return
        reader = self.open_reader(position)
        try:
            await reader.open()
            progress, moved = time.monotonic(), position
            checked, distance, windows = time.monotonic(), None, 0
            while True:
                at = await reader.positions()
                if self._level(at):
                    self.rearm(sub)  # no await since the check: the tailer is where it was
                    return
                if time.monotonic() - checked >= CATCH_UP_PROGRESS_SECONDS:
                    now = reader.distance()
                    closer = now is None or distance is None or now < distance
                    windows = 0 if closer else windows + 1
                    if windows >= 2:
                        raise FallingBehind(
                            f"{now} records behind the end of the alerts topic, no closer than"
                            f" {2 * CATCH_UP_PROGRESS_SECONDS:.0f} s ago"
                        )
                    checked, distance = time.monotonic(), now
                if at != moved:  # records, or only markers and aborted batches
                    progress, moved = time.monotonic(), at
                elif time.monotonic() - progress > CATCH_UP_STALL_SECONDS:
                    behind = [p for p, t in enumerate(self.positions) if p >= len(at) or at[p] < t]
                    raise TimeoutError(f"catch-up read stalled on partitions {behind}")
                for record in await reader.fetch():
                    yield record
        finally:
            try:
                await reader.close()
            except Exception as exc:  # the client's own outcome matters more
                log.warning("alert_feed.reader_close_failed", error=f"{type(exc).__name__}: {exc}")


class FallingBehind(Exception):
    """A connection's read of the topic is not getting closer to the tailer."""


class TopicReader(Protocol):
    """A connection's own read of the alerts topic, from a position (Kafka's: KafkaTopicReader)."""

    async def open(self) -> None: ...

    async def fetch(self) -> list[FeedRecord]:
        """The next committed records, in order per partition (none after a short wait)."""

    async def positions(self) -> list[int]:
        """The next offset to read, per partition."""

    def distance(self) -> int | None:
        """Records from where it reads to the end of the topic (None before it knows the end)."""

    async def close(self) -> None: ...


class KafkaTopicReader:
    """An aiokafka consumer with no group on every partition of the alerts topic."""

    def __init__(self, settings: Settings, position: list[int]) -> None:
        self.settings = settings
        self.position = position
        self.consumer = aio_consumer(
            settings, role="live-alert-feed", max_partition_fetch_bytes=CATCH_UP_FETCH_BYTES
        )
        self.tps = [TopicPartition(settings.alerts_topic, p) for p in range(len(position))]
        self.at = list(position)

    async def open(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        for tp, offset in zip(self.tps, self.position, strict=True):
            self.consumer.seek(tp, offset)

    async def fetch(self) -> list[FeedRecord]:
        batch = await self.consumer.getmany(timeout_ms=500)
        return [
            FeedRecord(tp.partition, r.offset, orjson.loads(r.value))
            for tp, records in batch.items()
            for r in records
        ]

    async def positions(self) -> list[int]:
        self.at = [await self.consumer.position(tp) for tp in self.tps]
        return self.at

    def distance(self) -> int | None:
        # the last stable offset is known only to a read_committed consumer (aio_consumer's); it
        # is -1 otherwise, which would make every distance 0
        ends = [self.consumer.last_stable_offset(tp) for tp in self.tps]
        if any(end is None for end in ends):
            return None  # (known after a fetch of every partition)
        return sum(max(0, end - at) for end, at in zip(ends, self.at, strict=True))

    async def close(self) -> None:
        # aiokafka 0.14's consumer without a group cancels a task of its own on stop; if that task
        # has not run yet (a reader closed right after it opened), the cancellation comes out of
        # stop() (aio-libs/aiokafka#647) and would end the client's connection. One turn of the
        # loop lets it start; a CancelledError that is not ours is dropped all the same.
        await asyncio.sleep(0)
        try:
            await self.consumer.stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
