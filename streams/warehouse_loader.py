"""Warehouse loader: pw.ledger and pw.alerts -> ClickHouse, in batches, off the detection path.

A thread of the worker process, with its own event loop and consumer group (`<app id>-warehouse`), reading
committed records only. A batch closes at `PW_WAREHOUSE_BATCH_ROWS` rows or
`PW_WAREHOUSE_BATCH_SECONDS`; offsets are committed only after the batch is stored, so a crash
redelivers at most the unstored tail, and `store_events` skips what was already stored. A record
that cannot be stored is dead-lettered (with a reason) and skipped; a crashed loader is restarted
with backoff and reported by GET /v1/health (503 "degraded"). While
the warehouse is down the loader stops fetching (Kafka holds the backlog, memory stays bounded)
and retries with backoff. The same process owns the embedded engine, so the web view answers
SQL through `loader.warehouse`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from mode import Service

from pipeline import deadletter
from pipeline.config import Settings
from sinks import metrics
from sinks.audit_store import BadRecord, checked_alert, checked_entry, store_alerts, store_events
from sinks.clickhouse import Warehouse, WarehouseError, migrate, open_warehouse
from sinks.kafka_io import aio_consumer, aio_producer

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
        self.deadlettered = 0
        self.last_error = ""
        #: Set when a run crashed; cleared once a restarted run stores a batch or finds nothing to load.
        self.crash_error = ""
        self.crashes = 0
        self.restart_delay = RESTART_MIN_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def health(self) -> tuple[str, str]:
        """`("ok", "")`, or `("degraded", why)`: crashed (restarting), dead, or failing to store."""
        if not self._thread.is_alive() and not self._stop.is_set():
            return "degraded", "the warehouse loader is not running" + (f": {self.crash_error}" if self.crash_error else "")
        if self.crash_error:
            return "degraded", f"the warehouse loader crashed ({self.crashes}x), restarting: {self.crash_error}"
        if self.last_error:
            return "degraded", self.last_error
        return "ok", ""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._main())
            except Exception as exc:  # a bug or a fault the loop does not handle: restart, never die
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
        consumer = aio_consumer(s, s.ledger_topic, s.alerts_topic, role="warehouse", group=s.warehouse_group)
        producer = aio_producer(s, role="warehouse-deadletter")
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
        events: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        pending = 0  # records consumed since the last commit, dead-lettered ones included
        opened = time.monotonic()
        while not self._stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=s.warehouse_batch_rows)
            for tp, records in batch.items():
                ledger = tp.topic == s.ledger_topic
                for record in records:
                    pending += 1
                    try:
                        if ledger:
                            events.append(checked_entry(record.value))
                        else:
                            alerts.append(checked_alert(record.value))
                    except BadRecord as bad:
                        await self._dead_letter(producer, record, bad)
            full = pending >= s.warehouse_batch_rows
            due = time.monotonic() - opened >= s.warehouse_batch_seconds
            if pending and (full or due):
                if not await self._store(consumer, events, alerts):
                    return  # stopping: not stored, not committed, redelivered on the next start
                self._healthy()
                events, alerts, pending = [], [], 0
            elif self.crash_error and not pending and not batch and await _caught_up(consumer):
                self._healthy()  # restarted and nothing left to load
            if not pending:
                opened = time.monotonic()
        if pending:
            await self._store(consumer, events, alerts)

    async def _dead_letter(self, producer: AIOKafkaProducer, record: Any, bad: BadRecord) -> None:
        """Send one unstorable record to the dead-letter topic (before its offset is committed)."""
        value = deadletter.record(bad.reason, bad.detail, record.topic, record.partition, record.offset, record.value)
        await producer.send_and_wait(self.settings.deadletter_topic, value=value, key=record.key)
        self.deadlettered += 1
        log.warning(
            "warehouse.record_dead_lettered", topic=record.topic, partition=record.partition,
            offset=record.offset, reason=bad.reason,
        )

    async def _store(
        self, consumer: AIOKafkaConsumer, events: list[dict[str, Any]], alerts: list[dict[str, Any]]
    ) -> bool:
        """Store one batch, retrying until it is stored (or the loader stops), then commit.

        The blocking insert runs in an executor, so the consumer keeps its group membership
        (heartbeats) while the warehouse is slow or down; no further batch is fetched meanwhile.
        Returns False when the loader stopped before the batch was stored.
        """
        loop = asyncio.get_running_loop()
        delay = 0.5
        started = time.monotonic()
        while True:
            try:
                await loop.run_in_executor(None, self._write, events, alerts)
                break
            except WarehouseError as exc:
                metrics.WAREHOUSE_FAILURES.inc()
                self.last_error = str(exc)
                log.error("warehouse.store_failed", error=str(exc), rows=len(events) + len(alerts), retry_in=delay)
                if self._stop.is_set():
                    return False  # not stored, not committed: redelivered on the next start
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.last_error = ""
        await consumer.commit()
        metrics.WAREHOUSE_BATCH_SECONDS.set(time.monotonic() - started)
        metrics.WAREHOUSE_BATCH_ROWS.observe(len(events) + len(alerts))
        return True

    def _write(self, events: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        stored = store_events(self.warehouse, events)
        if events:
            metrics.WAREHOUSE_INSERT_SECONDS.labels("audit.events").observe(time.monotonic() - started)
        self.stored_events += stored
        metrics.WAREHOUSE_ROWS.labels("audit.events").inc(stored)
        if alerts:
            started = time.monotonic()
            stored = store_alerts(self.warehouse, alerts)
            metrics.WAREHOUSE_INSERT_SECONDS.labels("audit.alerts").observe(time.monotonic() - started)
            self.stored_alerts += stored
            metrics.WAREHOUSE_ROWS.labels("audit.alerts").inc(stored)


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


def health(
    loader: WarehouseLoader | None, http_ingest_ready: bool, ingest: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """GET /v1/health: HTTP status and body. Anything but "ok" answers 503, so a container
    healthcheck (and any probe that checks the status code) sees a crashed or failing loader,
    or an ingest service whose batches fail (`ingest`: `IngestService.health()`)."""
    if loader is None:
        status, why = "starting", "starting"
    else:
        status, why = loader.health()
    if status == "ok" and ingest is not None and ingest.get("status") == "failing":
        status = "degraded"
    body = {
        "status": status,
        "stored_events": loader.stored_events if loader else 0,
        "stored_alerts": loader.stored_alerts if loader else 0,
        "warehouse_error": why,
        "loader_crashes": loader.crashes if loader else 0,
        "loader_dead_letters": loader.deadlettered if loader else 0,
        # POST /v1/events answers 503 until it can take events (streams/web/sql.py).
        "http_ingest": "ready" if http_ingest_ready else "starting",
    }
    if ingest is not None:
        # the ingest service (streams/ingest.py): running, its partitions, batches, why it fails
        body["ingest"] = ingest
    return (200 if status == "ok" else 503), body


class WarehouseLoaderService(Service):
    """Runs the loader inside the Faust worker's lifecycle."""

    loader: WarehouseLoader | None = None

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.loader = WarehouseLoader(self.settings)
        self.loader.start()
        log.info("warehouse.loader_started", backend=type(self.loader.warehouse).__name__)

    async def on_stop(self) -> None:
        if self.loader is not None:
            self.loader.stop()
            self.loader.warehouse.close()
