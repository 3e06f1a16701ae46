"""Warehouse loader: pw.ledger and pw.alerts -> ClickHouse, in batches, off the detection path.

It runs in `partnerwatch loader` (streams/loader_process.py): a child process of the worker
(`PW_WAREHOUSE_LOADER=process`, the default; with the embedded chDB warehouse, which one process
opens at a time, the child owns it and answers the worker's queries, streams/loader_child.py) or a
process you run (`external`, with a ClickHouse server); or as a thread of the worker
(`inprocess`). Either way it has its own event loop and consumer group (`<app id>-warehouse`) and reads committed records
only. A batch closes at `PW_WAREHOUSE_BATCH_ROWS` rows or `PW_WAREHOUSE_BATCH_SECONDS`.

The ledger's records go to ClickHouse as they are, in one insert per batch, with no Python per
record (`sinks.audit_store.store_raw`): the engine splits each record as the ingest service
joined it (canonical event, then the ledger's fields), checks that its hash covers those bytes
and that its shape is one the per-record path stores unchanged, and derives every column. When a
record is not (an older layout, a broken or unstorable record, an entry twice), the engine
refuses the whole batch, storing nothing, and the loader decodes and checks each record
(`ledger_line`, `store_lines`): the unstorable ones are dead-lettered. So is every batch that
may hold stored rows (after a failed insert, or a partition's first batch without a mark in a
warehouse that held events or marks when the loader first looked; a new warehouse holds none).
Duplicates are avoided with per-partition high-water marks
(`sinks.loader_offsets`), not with a query per batch: before a batch is inserted its marks are
written (everything below `start` is stored; `[start, end)` is being stored), then the rows, then
the Kafka offsets are committed. After a crash, redelivered records below a mark's `start` are
skipped without a query and only those in `[start, end)` are looked up in audit.events.

A record that cannot be stored is dead-lettered (with a reason) and skipped; a crashed loader is
restarted with backoff and reported by GET /v1/health (503 "degraded"). While the warehouse is
down the loader stops fetching (Kafka holds the backlog, memory stays bounded) and retries with
backoff. When the group rebalances, the batch is stored and committed before the partitions go.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from pipeline import deadletter
from pipeline.config import Settings
from sinks import metrics
from sinks.audit_store import (
    RAW_REFUSED,
    BadRecord,
    LedgerLine,
    checked_alert,
    holds_events,
    ledger_line,
    raw_layout,
    store_alerts,
    store_lines,
    store_raw,
    stored_keys,
)
from sinks.clickhouse import Warehouse, WarehouseError, migrate, open_warehouse
from sinks.clickhouse_embedded import EmbeddedWarehouse
from sinks.kafka_io import aio_consumer, aio_producer
from sinks.loader_offsets import Mark, read_marks, write_marks
from streams.faust_internals import raw_value, records_as_fetched, release_dropped_fetches
from streams.trim_thread import rss_mib
from streams.warehouse_batch import Batch, PartitionState

log = structlog.get_logger(__name__)


#: Backoff between restarts of a crashed loader (doubling), reset once it runs cleanly again.
RESTART_MIN_SECONDS = 0.5
RESTART_MAX_SECONDS = 60.0


class WarehouseLoader:
    """Consume, batch, store, commit; one thread, restarted with backoff if it crashes.

    A record the warehouse cannot store (not JSON, not an entry or an alert) goes to the
    dead-letter topic with a reason (pipeline/deadletter.py) and is skipped: one bad record never
    stops loading. Any other crash is logged, counted in `pw_warehouse_failures_total`, shown by
    `health()` (so GET /v1/health answers 503 "degraded") and followed by a restart after a backoff;
    the uncommitted batch is redelivered to the new run.
    """

    def __init__(self, settings: Settings, warehouse: Warehouse | None = None) -> None:
        self.settings = settings
        self.warehouse = warehouse or open_warehouse(settings)
        migrate(self.warehouse, settings)
        self.stored_events = 0
        self.stored_alerts = 0
        self.skipped = 0
        self.deadlettered = 0
        self.last_error = ""
        #: Set when a run crashed; cleared once a restarted run stores a batch or finds nothing to load.
        self.crash_error = ""
        self.crashes = 0
        self.restart_delay = RESTART_MIN_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-loader", daemon=True)
        # per run (each run has its own event loop)
        self._partitions: dict[int, PartitionState] = {}
        #: whether the warehouse held no event and no mark of the ledger at the run's first look
        #: since it began or last had partitions assigned (None: not looked yet)
        self._new_warehouse: bool | None = None
        self._owned: set[TopicPartition] = set()
        self._batch = Batch()
        self._lock: asyncio.Lock | None = None
        self._producer: AIOKafkaProducer | None = None
        self._revoking = False
        #: False once `store_raw` failed where the per-record insert then worked (until a restart)
        self._raw = True
        #: False once the engine said it cannot release freed memory (`_release_memory`)
        self._release = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def health(self) -> tuple[str, str]:
        """`("ok", "")`, or `("degraded", why)`: crashed (restarting), dead, or failing to store."""
        if not self._thread.is_alive() and not self._stop.is_set():
            return "degraded", "the warehouse loader is not running" + (
                f": {self.crash_error}" if self.crash_error else ""
            )
        if self.crash_error:
            return (
                "degraded",
                f"the warehouse loader crashed ({self.crashes}x), restarting: {self.crash_error}",
            )
        if self.last_error:
            return "degraded", self.last_error
        return "ok", ""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._main())
            except (
                Exception
            ) as exc:  # a bug or a fault the loop does not handle: restart, never die
                self.crashes += 1
                self.crash_error = f"{type(exc).__name__}: {exc}"[:500]
                metrics.WAREHOUSE_FAILURES.inc()
                delay = self.restart_delay
                self.restart_delay = min(delay * 2, RESTART_MAX_SECONDS)
                log.exception("warehouse.loader_crashed", crashes=self.crashes, restart_in=delay)
                self._stop.wait(delay)
            else:
                return

    def _healthy(self) -> None:
        if self.crash_error:
            log.info("warehouse.loader_recovered", crashes=self.crashes)
        self.crash_error = ""
        self.restart_delay = RESTART_MIN_SECONDS

    async def _main(self) -> None:
        s = self.settings
        # A new run knows nothing: marks are read again, the uncommitted batch is redelivered.
        self._partitions, self._owned, self._batch = {}, set(), Batch()
        self._lock, self._revoking, self._raw = asyncio.Lock(), False, True
        self._new_warehouse = None
        records_as_fetched()  # no ConsumerRecord per record: the offset, key and value do
        release_dropped_fetches()  # records fetched, then dropped unread, freed at once
        consumer = aio_consumer(
            s, role="warehouse", group=s.warehouse_group, value_deserializer=raw_value
        )
        consumer.subscribe([s.ledger_topic, s.alerts_topic], listener=_Rebalance(self, consumer))
        producer = self._producer = aio_producer(s, role="warehouse-deadletter")
        await producer.start()
        try:
            await consumer.start()
            try:
                await self._loop(consumer, producer)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        s = self.settings
        lock = self._held_lock()
        opened = time.monotonic()
        while not self._stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=s.warehouse_batch_rows)
            async with lock:
                await self._take(fetched, producer)
                pending = self._batch.records
                full = pending >= s.warehouse_batch_rows
                due = time.monotonic() - opened >= s.warehouse_batch_seconds
                if pending and (full or due):
                    if await self._flush(consumer):
                        self._healthy()
                    elif self._stop.is_set():
                        return  # stopping: not stored, not committed, redelivered on the next start
                    else:  # given up for a rebalance: uncommitted, its partitions' owners read it again
                        log.warning(
                            "warehouse.batch_given_up_on_rebalance", records=self._batch.records
                        )
                        self._batch = Batch()
                elif (
                    self.crash_error and not pending and not fetched and await _caught_up(consumer)
                ):
                    self._healthy()  # restarted and nothing left to load
            if not self._batch.records:
                opened = time.monotonic()
        async with lock:
            if self._batch.records:
                await self._flush(consumer)

    async def _take(
        self, fetched: dict[TopicPartition, list[Any]], producer: AIOKafkaProducer
    ) -> None:
        """Add fetched records to the batch: ledger records as they are (checked when the batch
        is stored), alerts checked or dead-lettered (before their offsets are committed)."""
        ledger_topic = self.settings.ledger_topic
        batch = self._batch
        for tp, records in fetched.items():
            if tp not in self._owned or not records:
                continue  # revoked since the fetch: its new owner reads it from the committed offset
            batch.records += len(records)
            if tp.topic == ledger_topic:
                batch.first.setdefault(tp.partition, records[0].offset)
                batch.ledger.append((tp.partition, records))
            else:
                for record in records:
                    try:
                        batch.alerts.append(checked_alert(record.value))
                    except BadRecord as bad:
                        await self._dead_letter(producer, tp, record, bad)
            batch.offsets[tp] = records[-1].offset + 1

    async def _dead_letter(
        self, producer: AIOKafkaProducer, tp: TopicPartition, record: Any, bad: BadRecord
    ) -> None:
        """Send one unstorable record of `tp` to the dead-letter topic (before its offset is
        committed). The records are as fetched (`raw_value`): they carry no topic or partition."""
        value = deadletter.record(
            bad.reason, bad.detail, tp.topic, tp.partition, record.offset, record.value
        )
        await producer.send_and_wait(self.settings.deadletter_topic, value=value, key=record.key)
        self.deadlettered += 1
        log.warning(
            "warehouse.record_dead_lettered",
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            reason=bad.reason,
        )

    async def _flush(self, consumer: AIOKafkaConsumer) -> bool:
        """Store the batch, retrying until it is stored (or the loader stops, or the partitions go),
        then commit its offsets. The caller holds the lock.

        The blocking insert runs in an executor, so the consumer keeps its group membership
        (heartbeats) while the warehouse is slow or down; no further batch is fetched meanwhile.
        Returns False when the batch was given up before it was stored (not committed either).
        """
        batch = self._batch
        loop = asyncio.get_running_loop()
        delay = 0.5
        started = time.monotonic()
        while True:
            try:
                bad = await loop.run_in_executor(None, self._write, batch)
                break
            except WarehouseError as exc:
                batch.failed = True
                metrics.WAREHOUSE_FAILURES.inc()
                self.last_error = str(exc)
                log.error(
                    "warehouse.store_failed", error=str(exc), rows=batch.records, retry_in=delay
                )
                if self._stop.is_set() or self._revoking:
                    return False  # not stored, not committed: redelivered on the next start
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.last_error = ""
        for tp, record, reason in bad:  # stored without them: dead-lettered before the commit
            await self._dead_letter(self._held_producer(), tp, record, reason)
        await consumer.commit(
            {tp: OffsetAndMetadata(offset, "") for tp, offset in batch.offsets.items()}
        )
        self._batch = Batch()
        metrics.WAREHOUSE_BATCH_SECONDS.set(time.monotonic() - started)
        metrics.WAREHOUSE_BATCH_ROWS.observe(batch.records)
        return True

    def _write(self, batch: Batch) -> list[tuple[TopicPartition, Any, BadRecord]]:
        """Marks, then the new rows, then the alerts (executor thread); the marks in memory move
        on only once all is stored. Returns the ledger records that cannot be stored, with why:
        the caller dead-letters them before it commits.

        The ledger records go to ClickHouse as they are (`store_raw`: no Python per record) when
        none of them may be stored already; when some may be (after a failed insert, or in a
        partition's first batch without a mark, unless the warehouse was new when the run began
        or last had partitions assigned), or when the engine refuses the batch (a record
        that is not plain, or one entry twice), each record is decoded and checked
        (`ledger_line`, `_new_lines`), as ever."""
        topic = self.settings.ledger_topic
        ends = {tp.partition: offset for tp, offset in batch.offsets.items() if tp.topic == topic}
        missing = [p for p in ends if p not in self._partitions]
        if missing:  # first batch of a partition in this run: where its mark stands
            marks = read_marks(self.warehouse, topic)
            if self._new_warehouse is None:  # the run's first look, or the first since a rebalance
                self._new_warehouse = not marks and not holds_events(self.warehouse)
            for p in missing:
                mark = marks.get(p)
                if mark is None and self._new_warehouse:
                    # The warehouse held no event and no mark when this loader began to own its
                    # partitions, and only a partition's owner stores its records, each batch
                    # after writing the partition's mark: a partition still without a mark has
                    # nothing stored, and nothing to look up.
                    self._partitions[p] = PartitionState(0, 0)
                else:
                    self._partitions[p] = PartitionState.of(mark)
        for p, first in batch.first.items():
            state = self._partitions[p]
            if state.check_below is None:
                state.check_below = first + self.settings.warehouse_batch_rows
        pending, skipped, fast = self._pending(batch)
        bad: list[tuple[TopicPartition, Any, BadRecord]] = []
        stored = 0
        if pending:
            write_marks(
                self.warehouse,
                topic,
                {p: Mark(self._partitions[p].stored_below, ends[p]) for p, _ in pending},
            )
            started = time.monotonic()
            values = [record.value for _, records in pending for record in records]
            raw = fast and self._raw and raw_layout(values[0]) and None not in values
            check_all = batch.failed
            if raw:
                try:
                    stored = store_raw(self.warehouse, values)
                except WarehouseError as exc:
                    raw = False
                    if RAW_REFUSED in str(exc):  # nothing stored: each record checked in turn
                        log.info("warehouse.raw_refused", records=len(values))
                        metrics.WAREHOUSE_RAW_REFUSED.inc()
                    else:  # e.g. a server without these functions; it may have stored some
                        check_all = True
                        log.warning("warehouse.raw_failed", error=str(exc)[:500])
            if not raw:
                stored, more = self._store_checked(pending, bad, check_all)
                if check_all and not batch.failed:  # the warehouse works, its raw path does not
                    self._raw = False
                skipped += more
            metrics.WAREHOUSE_INSERT_SECONDS.labels("audit.events").observe(
                time.monotonic() - started
            )
        self.stored_events += stored
        self.skipped += skipped
        metrics.WAREHOUSE_ROWS.labels("audit.events").inc(stored)
        metrics.WAREHOUSE_SKIPPED.inc(skipped)
        if batch.alerts:
            started = time.monotonic()
            stored = store_alerts(self.warehouse, batch.alerts)
            metrics.WAREHOUSE_INSERT_SECONDS.labels("audit.alerts").observe(
                time.monotonic() - started
            )
            self.stored_alerts += stored
            metrics.WAREHOUSE_ROWS.labels("audit.alerts").inc(stored)
        for p, end in ends.items():
            state = self._partitions[p]
            state.stored_below = max(state.stored_below, end)
        self._release_memory()
        return bad

    def _release_memory(self) -> None:
        """After a batch, while the process's RSS is above `PW_WAREHOUSE_RELEASE_ABOVE_MIB`, the
        embedded engine hands back the memory it freed (`EmbeddedWarehouse.release_memory`).

        The engine keeps what an insert or a merge freed, so the worker's RSS peaked about 250 MiB
        above what it held (docs/performance.md). Giving it back costs CPU (the pages are faulted
        in again by the next insert), so only above the limit. A server's memory is its own."""
        limit = self.settings.warehouse_release_above_mib
        if not limit or not self._release or not isinstance(self.warehouse, EmbeddedWarehouse):
            return
        rss = rss_mib()
        if rss is None or rss <= limit:
            return
        try:
            self.warehouse.release_memory()
        except WarehouseError as exc:  # an engine without jemalloc: nothing to release, ever
            self._release = False
            log.warning("warehouse.release_memory_unsupported", error=str(exc)[:300])
            return
        metrics.WAREHOUSE_MEMORY_RELEASES.inc()

    def _pending(self, batch: Batch) -> tuple[list[tuple[int, list[Any]]], int, bool]:
        """The batch's ledger records from each partition's `stored_below` on (by fetched run of
        records, not one by one), how many are below it, and whether none of them may be stored
        already (none below a partition's `check_below`, no failed attempt before)."""
        pending: list[tuple[int, list[Any]]] = []
        skipped = 0
        fast = not batch.failed
        for p, records in batch.ledger:
            state = self._partitions[p]
            if records[0].offset < state.stored_below:
                kept = [r for r in records if r.offset >= state.stored_below]
                skipped += len(records) - len(kept)
                records = kept
            if not records:
                continue
            if records[0].offset < (state.check_below or 0):
                fast = False
            pending.append((p, records))
        return pending, skipped, fast

    def _store_checked(
        self,
        pending: list[tuple[int, list[Any]]],
        bad: list[tuple[TopicPartition, Any, BadRecord]],
        check_all: bool,
    ) -> tuple[int, int]:
        """The per-record path: decode and check each record (the unstorable ones go to `bad`),
        leave out what audit.events holds, store the rest. Returns (stored, skipped)."""
        lines: list[tuple[int, int, LedgerLine]] = []
        topic = self.settings.ledger_topic
        for p, records in pending:
            for record in records:
                try:
                    lines.append((p, record.offset, ledger_line(record.value)))
                except BadRecord as reason:
                    bad.append((TopicPartition(topic, p), record, reason))
        new, skipped = self._new_lines(lines, check_all)
        return store_lines(self.warehouse, [line for _, _, line in new]), skipped

    def _new_lines(
        self, lines: list[tuple[int, int, LedgerLine]], check_all: bool
    ) -> tuple[list[tuple[int, int, LedgerLine]], int]:
        """The ledger records the warehouse does not hold yet, and how many it does."""
        new: list[tuple[int, int, LedgerLine]] = []
        check: list[LedgerLine] = []
        seen: set[tuple[str, int]] = set()
        skipped = 0
        for item in lines:
            p, offset, line = item
            state = self._partitions[p]
            key = (line.account_id, line.seq)
            if offset < state.stored_below or key in seen:
                skipped += 1
                continue
            seen.add(key)
            if check_all or offset < (state.check_below or 0):
                check.append(line)
            new.append(item)
        if check:
            stored = stored_keys(self.warehouse, check)
            if stored:
                new = [item for item in new if (item[2].account_id, item[2].seq) not in stored]
                skipped += len(stored)
                log.info("warehouse.redelivered_skipped", rows=len(stored), checked=len(check))
        return new, skipped

    def _held_producer(self) -> AIOKafkaProducer:
        """The run's dead-letter producer."""
        if self._producer is None:
            raise RuntimeError("the loader's run has not started")
        return self._producer

    def _held_lock(self) -> asyncio.Lock:
        """The run's lock: the loop holds it while it takes and stores a batch, a rebalance while
        it stores the batch and hands partitions over (one at a time, never interleaved)."""
        if self._lock is None:
            raise RuntimeError("the loader's run has not started")
        return self._lock

    # -- rebalances -------------------------------------------------------------------------------

    async def revoked(self, consumer: AIOKafkaConsumer, revoked: Iterable[TopicPartition]) -> None:
        """Partitions are leaving: store and commit the batch first (its rows may be theirs), so
        their next owner starts after it; if that fails, give the batch up uncommitted."""
        lock = self._held_lock()
        self._revoking = True
        try:
            async with lock:
                if self._batch.records and not await self._flush(consumer):
                    log.warning(
                        "warehouse.batch_given_up_on_rebalance", records=self._batch.records
                    )
                    self._batch = Batch()
                gone = set(revoked)
                self._owned -= gone
                for tp in gone:
                    if tp.topic == self.settings.ledger_topic:
                        self._partitions.pop(tp.partition, None)
        finally:
            self._revoking = False

    async def assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """New partitions: their marks are read before their first batch is stored, and whether
        the warehouse is new is asked again (another owner may have stored some of them)."""
        async with self._held_lock():
            self._new_warehouse = None
            for tp in assigned:
                self._owned.add(tp)
                if tp.topic == self.settings.ledger_topic:
                    self._partitions.pop(tp.partition, None)

    def note_share(self, consumer: AIOKafkaConsumer) -> list[str]:
        """Warn when this loader stores only part of a topic into an embedded warehouse: other
        members of the loader group (another worker's loader, `partnerwatch loader`) have the
        other partitions and store them elsewhere, so this warehouse does not hold the whole
        record. The warnings, one per topic concerned (none with a ClickHouse server)."""
        if not isinstance(self.warehouse, EmbeddedWarehouse):
            return []  # a ClickHouse server: every loader stores into the same tables
        assigned = consumer.assignment()
        warnings = []
        for topic in (self.settings.ledger_topic, self.settings.alerts_topic):
            owned = {tp.partition for tp in assigned if tp.topic == topic}
            partitions = consumer.partitions_for_topic(topic)
            warning = embedded_share(topic, owned, partitions)
            if warning is not None and partitions is not None:
                log.warning(
                    "warehouse.embedded_holds_a_share",
                    topic=topic,
                    partitions=sorted(owned),
                    of=len(partitions),
                    detail=warning,
                )
                warnings.append(warning)
        return warnings


def embedded_share(topic: str, owned: set[int], partitions: set[int] | None) -> str | None:
    """Why an embedded warehouse whose loader was given the partitions `owned` of `topic`,
    whose partitions are `partitions`, does not hold all of it (None: it was given every
    partition, or the topic's partitions are not known). After a rebalance a loader alone in
    its group is given every partition, so one given fewer, none included, shares the topic."""
    if not partitions or owned >= partitions:
        return None
    return (
        f"this loader stores partitions {sorted(owned)} of the {len(partitions)} of {topic} into"
        " its embedded warehouse: other members of the loader group store the others elsewhere,"
        " so SQL, verify-chain and alert actions on this worker see only part of the record, and"
        " what the others stored is not loaded here later (the group's offsets have moved past"
        " it). Run more than one worker against a ClickHouse server (PW_CLICKHOUSE_URL)"
    )


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loader: WarehouseLoader, consumer: AIOKafkaConsumer) -> None:
        self.loader, self.consumer = loader, consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.loader.revoked(self.consumer, revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.loader.assigned(assigned)
        self.loader.note_share(self.consumer)


async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Every assigned partition read to its last stable offset (the loader has nothing to do)."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        end = consumer.last_stable_offset(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True
