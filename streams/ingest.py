"""The ingest service: pw.actions -> validate, mask, sequence, detect -> pw.ledger, state, dead letters.

A `faust.Service` of the worker (started, stopped and reported in /v1/health with the app) that
reads record batches with a plain aiokafka consumer, not through Faust's `Stream` (why:
docs/performance.md). Its consumer is a member of the group `<app id>-ingest`, so the workers
share the actions topic's partitions; each partition it is given has one `PartitionIngest`,
its only writer, which works through the partition's records in offset order, one batch at a
time (`streams/ingest_batch.py` does the per-record work), while other partitions' batches run
between its awaits. With `OVERLAP_COMMITS` (streams/ingest_partition.py, on by default) a
batch's transaction does not hold up the partition's next records: they are worked on into the
next batch while it is in flight (one transaction in flight and one open batch per partition).

Exactly once (`PW_PROCESSING_GUARANTEE=exactly_once`, the default): each partition has a
transactional producer of its own, `<app id>-ingest-<partition>`. One batch is one transaction:
its ledger entries and its dead letters, all on the source's partition number, and the source
offset after the batch for the group. They commit together or not at all. Every
`PW_STATE_CHECKPOINT_SECONDS` (1 s), with every ledger snapshot, with the state check's repairs
(streams/state_repair.py), and before a partition is handed over, the transaction is also a state
checkpoint (the one before a handover also a ledger snapshot, when the ledger moved on since the
last one: pipeline/ledger_snapshot.py): it writes every account state and open alert
changed since the previous one (compacted topics partitioned as the actions topic) and the source
offset they stand at; a partition with no records commits one for them alone when it is due. A
load folds the ledger entries after that offset into the states again (their alerts are not
published again), so a restart ends with the states the partition had. Starting that producer (on assignment, or after a failure) fences any older one with
the same id, wherever it runs, and ends its open transaction, so a worker that lost the
partition cannot write to it again; only then is the state read back.

On assignment, a partition's state is rebuilt from Kafka (committed records only): the ledger
partition gives each account's chain head, the dedup window and the source offset of the last
sequenced event (`ingest_offset`); the state topics give detection's state. The ledger, not the
consumer group, says where sequencing stands: reading resumes at the ledger's position, or at
the group's committed offset when that is further (what lies between was dead-lettered or was
a duplicate, in the committed transaction that moved the offset); a group behind the ledger (a
new group, offsets expired, at-least-once) is counted in `pw_ingest_catch_up_total`. On
revocation the partition's transaction in flight (if any) commits, then its batch in hand is
finished and committed; records fetched after it are dropped (the next owner reads them). A batch whose
transaction fails is aborted, and the partition starts over as if newly assigned (a new
producer, state reloaded, reading from the committed position); what was worked on while that
transaction was in flight, if anything, is dropped with it.

Alerts go out at once through the alert publisher (streams/alert_publisher.py), outside the
transaction; a batch's source offsets commit only after its alerts are acknowledged.

`PW_PROCESSING_GUARANTEE=at_least_once`: one idempotent producer; a batch's records are flushed,
then its offset is committed by the consumer. After a crash the ledger's position still decides
where sequencing resumes, and the states are folded forward from their checkpoint, or rebuilt
by the state check (streams/state_repair.py) where a checkpoint's records were not all written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError
from mode import Service

from pipeline import floors
from pipeline.config import Settings
from sinks import metrics
from sinks.kafka_io import aio_batch_producer, aio_consumer
from streams import collector, ml_models
from streams.alert_publisher import publisher
from streams.app import app, settings
from streams.detect_metrics import DetectMetrics
from streams.faust_internals import (
    raw_value,
    records_as_fetched,
    release_dropped_fetches,
    set_fetch_max_wait,
)
from streams.fetch_wait import BUSY_MS, FetchWait
from streams.ingest_batch import Ingest, IngestBatch
from streams.ingest_partition import MAX_BATCH, PartitionIngest

log = structlog.get_logger(__name__)

#: How long a partition's load waits for the worker's first look for a behaviour model (the
#: load folds the ledger after the last state checkpoint with it, and the batches after it use it).
MODEL_WAIT_SECONDS = 60.0


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
            self.shared_producer = aio_batch_producer(s, role="ingest")
            await self.shared_producer.start()
        records_as_fetched()  # no ConsumerRecord per record: the offset, key, value and time do
        release_dropped_fetches()  # records fetched, then dropped unread, freed at once
        self.consumer = aio_consumer(
            s,
            role="ingest",
            group=s.ingest_group,
            fetch_max_wait_ms=BUSY_MS,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            value_deserializer=raw_value,
        )
        self.consumer.subscribe([s.actions_topic], listener=_Rebalance(self))
        await self.consumer.start()
        self.status = "running"
        self.add_future(self._consume())

    async def loaded_model(self) -> Any:
        """The behaviour model, once the worker's first look for one has ended (at most
        `MODEL_WAIT_SECONDS`; then whatever is in force, and said so)."""
        if not await ml_models.first_look(MODEL_WAIT_SECONDS):
            log.warning("ingest.model_not_ready", waited_seconds=MODEL_WAIT_SECONDS)
        return ml_models.current()

    async def on_stop(self) -> None:
        self.status = "stopping"
        await self.revoke([p.tp for p in list(self.partitions.values())])
        if self.consumer is not None:
            await self.consumer.stop()
        if self.shared_producer is not None:
            await self.shared_producer.stop()

    async def _consume(self) -> None:
        consumer = self.running_consumer()
        wait = FetchWait()  # short while records arrive, longer once idle (streams/fetch_wait.py)
        while not self.should_stop:
            try:
                # one batch's worth at a time: a partition's pending records stay near MAX_PENDING
                fetched = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
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
            busy = bool(fetched) or any(p.paused for p in self.partitions.values())
            if (ms := wait.update(busy)) is not None:
                set_fetch_max_wait(consumer, ms)

    async def assign(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            if tp.topic == self.settings.actions_topic and tp.partition not in self.partitions:
                part = self.partitions[tp.partition] = PartitionIngest(self, tp)
                part.start()
        log.info("ingest.assigned", partitions=sorted(self.partitions))

    def loaded(self, part: PartitionIngest) -> None:
        """A partition's state is loaded: once all are, the first time, freeze the heap."""
        if not self._froze and all(p.state is not None for p in self.partitions.values()):
            # Everything loaded so far lives as long as the process: out of the collector's view;
            # a batch allocates (and frees) dicts by the thousand: the youngest generation every
            # GC_THRESHOLD allocations instead of every 700.
            collector.settle()
            self._froze = True

    async def revoke(self, revoked: list[TopicPartition]) -> None:
        parts = [
            self.partitions.pop(tp.partition) for tp in revoked if tp.partition in self.partitions
        ]
        await asyncio.gather(*(p.close() for p in parts))
        if parts:
            floors.clear_all()  # let go of the revoked states' dicts (pipeline/floors.py)
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

    def dedup_gauges(self) -> None:
        """The dedup window's memory across this worker's partitions (bounded mode)."""
        ledgers = [p.state.ledger for p in self.partitions.values() if p.state is not None]
        metrics.DEDUP_EXACT_IDS.set(sum(x.seen_count() for x in ledgers))
        metrics.DEDUP_FILTER_IDS.set(sum(x.filter_count() for x in ledgers))
        metrics.DEDUP_FILTER_FALSE_POSITIVE.set(
            max(
                (f.false_positive_rate() for x in ledgers for f in x.filters.values()),
                default=0.0,
            )
        )

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
