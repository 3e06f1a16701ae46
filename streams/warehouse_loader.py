"""Warehouse loader: pw.ledger and pw.alerts -> ClickHouse, in batches, off the detection path.

A thread of the worker process, with its own event loop and consumer group (`<app id>-warehouse`), reading
committed records only. A batch closes at `PW_WAREHOUSE_BATCH_ROWS` rows or
`PW_WAREHOUSE_BATCH_SECONDS`; offsets are committed only after the batch is stored, so a crash
redelivers at most the unstored tail, and `store_events` skips what was already stored. While
the warehouse is down the loader stops fetching (Kafka holds the backlog, memory stays bounded)
and retries with backoff. The same process owns the embedded engine, so the web view answers
SQL through `loader.warehouse`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer
from mode import Service

from pipeline.config import Settings
from sinks import metrics
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import Warehouse, WarehouseError, migrate, open_warehouse

log = structlog.get_logger(__name__)


class WarehouseLoader:
    """Consume, batch, store, commit; one thread."""

    def __init__(self, settings: Settings, warehouse: Warehouse | None = None) -> None:
        self.settings = settings
        self.warehouse = warehouse or open_warehouse(settings)
        migrate(self.warehouse, settings)
        self.stored_events = 0
        self.stored_alerts = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warehouse-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.ledger_topic,
            s.alerts_topic,
            bootstrap_servers=s.kafka_broker,
            group_id=s.warehouse_group,
            client_id=s.client_id("warehouse"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        await consumer.start()
        events: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        opened = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=s.warehouse_batch_rows)
                for tp, records in batch.items():
                    target = events if tp.topic == s.ledger_topic else alerts
                    target.extend(orjson.loads(r.value) for r in records)
                full = len(events) + len(alerts) >= s.warehouse_batch_rows
                due = time.monotonic() - opened >= s.warehouse_batch_seconds
                if (events or alerts) and (full or due):
                    await self._store(consumer, events, alerts)
                    events, alerts = [], []
                if not (events or alerts):
                    opened = time.monotonic()
            if events or alerts:
                await self._store(consumer, events, alerts)
        finally:
            await consumer.stop()

    async def _store(
        self, consumer: AIOKafkaConsumer, events: list[dict[str, Any]], alerts: list[dict[str, Any]]
    ) -> None:
        """Store one batch, retrying until it is stored (or the loader stops), then commit.

        The blocking insert runs in an executor, so the consumer keeps its group membership
        (heartbeats) while the warehouse is slow or down; no further batch is fetched meanwhile.
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
                    return  # not stored, not committed: redelivered on the next start
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.last_error = ""
        await consumer.commit()
        metrics.WAREHOUSE_BATCH_SECONDS.set(time.monotonic() - started)
        metrics.WAREHOUSE_BATCH_ROWS.observe(len(events) + len(alerts))

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
