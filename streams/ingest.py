"""The ingest service: pw.actions -> validate, mask, sequence, detect -> pw.ledger, state, dead letters.

A `faust.Service` of the worker (started, stopped and reported in /v1/health with the app) that
reads record batches with a plain aiokafka consumer, not through Faust's `Stream` (why:
docs/performance.md). Its consumer is a member of the group `<app id>-ingest`, so the workers
share the actions topic's partitions; each partition it is given has one `PartitionIngest`,
its only writer, which works through the partition's records in offset order, one batch at a
time (`streams/ingest_batch.py` does the per-record work), while other partitions' batches run
between its awaits.

Exactly once (`PW_PROCESSING_GUARANTEE=exactly_once`, the default): each partition has a
transactional producer of its own, `<app id>-ingest-<partition>`. One batch is one transaction:
its ledger entries, its state records (each touched account's state, each changed open alert:
compacted topics partitioned as the actions topic) and its dead letters, all on the source's
partition number, and the source offset after the batch for the group. They commit together or
not at all. Starting that producer (on assignment, or after a failure) fences any older one with
the same id, wherever it runs, and ends its open transaction, so a worker that lost the
partition cannot write to it again; only then is the state read back.

On assignment, a partition's state is rebuilt from Kafka (committed records only): the ledger
partition gives each account's chain head, the dedup window and the source offset of the last
sequenced event (`ingest_offset`); the state topics give detection's state. The ledger, not the
consumer group, says where sequencing stands: reading resumes at the ledger's position, or at
the group's committed offset when that is further (what lies between was dead-lettered or was
a duplicate, in the committed transaction that moved the offset); a group behind the ledger (a
new group, offsets expired, at-least-once) is counted in `pw_ingest_catch_up_total`. On
revocation the partition's batch in hand is finished and committed first; records fetched after
it are dropped (the next owner reads them). A batch whose transaction fails is aborted, and the
partition starts over as if newly assigned (a new producer, state reloaded, reading from the
committed position).

Alerts go out at once through the alert publisher (streams/alert_publisher.py), outside the
transaction; a batch's source offsets commit only after its alerts are acknowledged.

`PW_PROCESSING_GUARANTEE=at_least_once`: one idempotent producer; a batch's records are flushed,
then its offset is committed by the consumer. After a crash the ledger's position still decides
where sequencing resumes, but state records may lag the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from pipeline.config import Settings
from sinks import metrics
from sinks.kafka_io import aio_consumer, aio_producer
from streams import ml_models, state_repair
from streams.alert_publisher import publisher
from streams.app import app, settings
from streams.detect_metrics import DetectMetrics
from streams.ingest_batch import Ingest, IngestBatch, PartitionState, Record
from streams.partition_read import read_partition

log = structlog.get_logger(__name__)

#: Records a partition takes into one batch (one transaction) at most, and records fetched for
#: it but not yet worked on beyond which its fetching pauses.
MAX_BATCH = 5_000
MAX_PENDING = 20_000
#: How long the broker may hold a fetch with no data for it (the latency floor of an idle worker).
FETCH_MAX_WAIT_MS = 5
#: Garbage collector thresholds once the state is loaded (Python's defaults: 700, 10, 10).
#: Measured in-process on the benchmark's mix (bench/stages.py, median of 3): 97.2 µs per event
#: with the defaults, 92.5 with these, 95.8 with (50,000, 50, 100).
GC_THRESHOLD = (10_000, 20, 50)
#: Backoff between attempts to restart a partition whose batch failed (doubling).
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.5, 30.0


async def load_state(s: Settings, partition: int) -> PartitionState:
    """One partition's state from its ledger and state topic partitions (committed records)."""
    started = time.monotonic()
    state = PartitionState(partition, s.dedup_window_days)

    async def read(topic: str, load: Any) -> int:
        count = 0
        async for record in read_partition(topic, partition, None, None):
            load(record)
            count += 1
        return count

    entries, accounts, alerts = await asyncio.gather(
        read(s.ledger_topic, lambda r: state.load_ledger(r.value)),
        read(s.account_state_topic, lambda r: state.load_account(r.key, r.value)),
        read(s.open_alerts_topic, lambda r: state.load_alert(r.key, r.value)),
    )
    log.info(
        "ingest.state_loaded",
        partition=partition,
        entries=entries,
        accounts=len(state.accounts),
        open_alerts=len(state.open_alerts),
        changelog_records=accounts + alerts,
        seconds=round(time.monotonic() - started, 3),
    )
    return state


class PartitionIngest:
    """The one writer of one partition: its state, its producer, its records in hand."""

    def __init__(self, service: IngestService, tp: TopicPartition) -> None:
        self.service = service
        self.tp = tp
        self.state: PartitionState | None = None
        #: the loaded state was checked against the ledger (at the partition's first batch)
        self.checked = False
        self.producer: AIOKafkaProducer | None = None
        self.pending: list[Any] = []
        self.paused = False
        self.closing = False
        #: a batch is being worked on (revocation waits for it to commit)
        self.in_batch = False
        self.batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def transactional(self) -> bool:
        return self.service.settings.processing_guarantee == "exactly_once"

    def start(self) -> None:
        """Take the partition on: load it, then work through what the consumer fetches for it
        (records fetched meanwhile wait in `pending`)."""
        self._task = asyncio.ensure_future(self._main())

    async def _main(self) -> None:
        await self._take_up()
        self.service.loaded(self)
        await self._run()

    async def _load(self) -> None:
        """Fence older producers of the partition, load its state, seek to where the ledger says."""
        s = self.service.settings
        self.pending = []
        if self.transactional:
            producer = aio_producer(
                s,
                role=f"ingest-{self.tp.partition}",
                transactional_id=s.ingest_transactional_id(self.tp.partition),
                linger_ms=0,
                max_batch_size=1024 * 1024,
            )
            await producer.start()  # InitProducerId: any older producer of this id is fenced now
            self.producer = producer
        else:
            self.producer = self.service.shared_producer
        self.state = await load_state(s, self.tp.partition)
        self.checked = False
        consumer = self.service.running_consumer()
        committed = await consumer.committed(self.tp) or 0
        position = max(committed, self.state.next_offset)
        if self.state.next_offset > committed:
            metrics.INGEST_CATCH_UP.inc(self.state.next_offset - committed)
            log.warning(
                "ingest.position_from_ledger",
                partition=self.tp.partition,
                group_committed=committed,
                ledger_next=self.state.next_offset,
            )
        if not position:
            position = (await consumer.beginning_offsets([self.tp]))[self.tp]
        # From here on the consumer delivers records from `position` only (aiokafka drops what
        # it holds or fetched for an older position); nothing in between awaits.
        consumer.seek(self.tp, position)
        self.pending = []
        self.state.ledger.next_offset = position
        if self.paused:  # paused while records piled up during the load: they are gone now
            self.service.resume(self.tp)
            self.paused = False

    def feed(self, records: list[Any]) -> None:
        if self.closing:
            return
        self.pending.extend(records)
        self._wake.set()
        if len(self.pending) >= MAX_PENDING and not self.paused:
            self.service.pause(self.tp)
            self.paused = True

    async def close(self) -> None:
        """Finish the batch in hand (its transaction commits), drop the rest, stop the producer."""
        self.closing = True
        self._wake.set()
        if self._task is not None:
            if not self.in_batch:  # loading, waiting to retry, or idle: nothing to finish
                self._task.cancel()
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                pass
            except Exception:  # its failure was logged where it happened
                log.exception("ingest.partition_loop_failed", partition=self.tp.partition)
        self.pending = []
        if self.transactional and self.producer is not None:
            await self.producer.stop()
        self.producer = None

    async def _run(self) -> None:
        while not self.closing:
            await self._wake.wait()
            self._wake.clear()
            while self.pending and not self.closing:
                records, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                if self.paused and len(self.pending) < MAX_PENDING // 2:
                    self.service.resume(self.tp)
                    self.paused = False
                try:
                    await self._marked_batch(records)
                except ProducerFenced:
                    log.error("ingest.fenced", partition=self.tp.partition)
                    self.service.note_error(
                        f"partition {self.tp.partition}: fenced by a newer producer"
                    )
                    self.closing = True
                    return
                except Exception as exc:  # a failed batch: abort, and start the partition over
                    self.service.note_error(
                        f"partition {self.tp.partition}: {type(exc).__name__}: {exc}"
                    )
                    log.exception("ingest.batch_failed", partition=self.tp.partition)
                    await self._take_up()
                    self.service.note_recovered()

    async def _marked_batch(self, records: list[Any]) -> None:
        self.in_batch = True
        try:
            await self._batch(records)
        finally:
            self.in_batch = False

    async def _batch(self, records: list[Any]) -> None:
        state, producer = self.state, self.producer
        if state is None or producer is None:
            raise RuntimeError(f"partition {self.tp.partition} is not loaded")
        repairs = None
        if not self.checked:
            # Before any event of the partition is detected: each account's loaded state must be
            # at its ledger head (streams/state_repair.py); what was rebuilt commits with this batch.
            repairs = await state_repair.check_partition(state)
        out = self.service.ingest.batch(state, records)
        if repairs is not None:
            out.accounts = {**repairs.accounts, **out.accounts}
            out.alert_changes = {**repairs.alerts, **out.alert_changes}
        for key, value, _ in out.alerts:
            await publisher.publish(key, value, self.tp.partition)
        s, p = self.service.settings, self.tp.partition
        outputs: list[tuple[str, list[Record]]] = [
            (s.ledger_topic, out.ledger),
            (s.deadletter_topic, out.deadletters),
            (s.account_state_topic, out.account_records()),
            (s.open_alerts_topic, out.alert_records()),
        ]
        if self.transactional:
            await producer.begin_transaction()
            try:
                for topic, batch in outputs:
                    await _send(producer, topic, p, batch)
                await publisher.delivered()  # alerts durable before the offsets of their events
                await producer.send_offsets_to_transaction(
                    {self.tp: OffsetAndMetadata(out.next_offset, "")}, s.ingest_group
                )
                await producer.commit_transaction()
            except ProducerFenced:
                raise
            except BaseException:
                await _abort(producer)
                raise
        else:
            waiting = [await _send(producer, topic, p, batch) for topic, batch in outputs]
            await asyncio.gather(*(f for f in waiting if f is not None))
            await publisher.delivered()
            await self.service.running_consumer().commit({self.tp: out.next_offset})
        self.batches += 1
        self.checked = True
        self.service.count(out)

    async def _take_up(self) -> None:
        """Load the partition (again, after a failed batch: a new producer, fencing the old
        epoch, the state reloaded, reading from the committed position); retried with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self.closing:
            try:
                if self.transactional and self.producer is not None:
                    await self.producer.stop()
                self.producer = None
                await self._load()
                return
            except Exception as exc:  # the broker may still be away: try again
                self.service.note_error(
                    f"partition {self.tp.partition}: loading failed: {type(exc).__name__}: {exc}"
                )
                log.warning(
                    "ingest.load_failed",
                    partition=self.tp.partition,
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)


async def _send(
    producer: AIOKafkaProducer, topic: str, partition: int, records: list[Record]
) -> Any:
    """Append `records` to the producer as ready-built record batches; the last batch's future."""
    if not records:
        return None
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            await producer.send_batch(batch, topic, partition=partition)
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(
                    f"a record of {len(value or b'')} bytes for {topic} exceeds the producer's batch size"
                )
    return await producer.send_batch(batch, topic, partition=partition)


async def _abort(producer: AIOKafkaProducer) -> None:
    try:
        await producer.abort_transaction()
    except Exception as exc:  # the producer is replaced next in any case
        log.warning("ingest.abort_failed", error=f"{type(exc).__name__}: {exc}")


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: IngestService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.service.assign(assigned)


class IngestService(Service):
    """Consumes the actions topic in record batches and hands each partition's to its writer."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self.ingest = Ingest(settings, model=ml_models.current, metrics=DetectMetrics())
        self.consumer: AIOKafkaConsumer | None = None
        self.shared_producer: AIOKafkaProducer | None = None
        self.partitions: dict[int, PartitionIngest] = {}
        self.status = "starting"
        self.last_error = ""
        self.failing = False
        self.batches = 0
        self._froze = False
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.add_runtime_dependency(publisher)
        s = self.settings
        if s.processing_guarantee != "exactly_once":
            self.shared_producer = aio_producer(
                s, role="ingest", linger_ms=0, max_batch_size=1024 * 1024
            )
            await self.shared_producer.start()
        self.consumer = aio_consumer(
            s,
            role="ingest",
            group=s.ingest_group,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self.consumer.subscribe([s.actions_topic], listener=_Rebalance(self))
        await self.consumer.start()
        self.status = "running"
        self.add_future(self._consume())

    async def on_stop(self) -> None:
        self.status = "stopping"
        await self.revoke([p.tp for p in list(self.partitions.values())])
        if self.consumer is not None:
            await self.consumer.stop()
        if self.shared_producer is not None:
            await self.shared_producer.stop()

    async def _consume(self) -> None:
        consumer = self.running_consumer()
        while not self.should_stop:
            try:
                fetched = await consumer.getmany(timeout_ms=200, max_records=20_000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the broker away: the consumer reconnects by itself
                self.note_error(f"fetch: {type(exc).__name__}: {exc}")
                log.warning("ingest.fetch_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in fetched.items():
                part = self.partitions.get(tp.partition)
                if part is not None:
                    part.feed(records)

    async def assign(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            if tp.topic == self.settings.actions_topic and tp.partition not in self.partitions:
                part = self.partitions[tp.partition] = PartitionIngest(self, tp)
                part.start()
        log.info("ingest.assigned", partitions=sorted(self.partitions))

    def loaded(self, part: PartitionIngest) -> None:
        """A partition's state is loaded: once all are, the first time, freeze the heap."""
        if not self._froze and all(p.state is not None for p in self.partitions.values()):
            # Everything loaded so far lives as long as the process: out of the collector's view.
            gc.freeze()
            # A batch allocates (and frees) dicts by the thousand: collect the youngest
            # generation every GC_THRESHOLD allocations instead of every 700.
            gc.set_threshold(*GC_THRESHOLD)
            self._froze = True

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        parts = [
            self.partitions.pop(tp.partition) for tp in revoked if tp.partition in self.partitions
        ]
        await asyncio.gather(*(p.close() for p in parts))
        if parts:
            log.info("ingest.revoked", partitions=sorted(p.tp.partition for p in parts))

    def running_consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError("the ingest service is not started")
        return self.consumer

    def pause(self, tp: TopicPartition) -> None:
        with contextlib.suppress(IllegalStateError):  # revoked meanwhile
            self.running_consumer().pause(tp)

    def resume(self, tp: TopicPartition) -> None:
        with contextlib.suppress(IllegalStateError):
            self.running_consumer().resume(tp)

    def count(self, out: IngestBatch) -> None:
        self.batches += 1
        metrics.EVENTS_CONSUMED.inc(out.consumed)
        metrics.EVENTS_ACCEPTED.inc(out.accepted)
        metrics.EVENTS_DUPLICATE.inc(out.duplicates)
        now = time.time()
        for _, _, timestamp in out.alerts:
            metrics.ALERT_LATENCY.observe(max(0.0, now - timestamp / 1000))
        if self.failing:
            self.note_recovered()

    def note_error(self, error: str) -> None:
        self.last_error = error[:500]
        self.failing = True
        metrics.INGEST_FAILURES.inc()

    def note_recovered(self) -> None:
        self.failing = False

    def health(self) -> dict[str, Any]:
        """For /v1/health: running (with its partitions), starting, or failing (with why)."""
        status = "failing" if self.failing else self.status
        return {
            "status": status,
            "partitions": sorted(self.partitions),
            "batches": self.batches,
            "error": self.last_error if self.failing else "",
        }


ingest_service = IngestService(settings)
app.service(ingest_service)  # type: ignore[arg-type]  # Faust accepts instances too
