"""Alerts out at once: a producer of its own, outside the ingest transaction.

Inside the transaction an alert would become visible only at the next commit (every
`PW_COMMIT_INTERVAL`); published here it is visible within milliseconds. `publish` appends to the
producer's batch in call order (an alert's versions stay in order) without waiting for the
broker; `delivered` waits for everything published so far and raises if a delivery failed, so
the ingest agent calls it before its batch may commit: an alert is durable before the offsets of
the event that raised it. Idempotent producer, acks from all replicas.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service

from sinks.kafka_io import aio_producer
from streams.app import app, settings


class AlertPublisher(Service):
    """Started with the worker; owns the alert producer."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[object]] = []
        #: what an earlier `delivered` still waits for (its alerts are not acknowledged yet)
        self._waiting: asyncio.Future[Any] | None = None

    async def on_start(self) -> None:
        self._producer = aio_producer(settings, role="alerts", linger_ms=0)
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self.delivered()
            await self._producer.stop()

    async def publish(self, key: bytes, value: bytes, partition: int) -> None:
        """Send one alert to its account's partition of pw.alerts; do not wait for the broker.

        Awaiting `send` only appends to the producer's batch, in call order, so an alert's
        versions stay in order on its partition.
        """
        if self._producer is None:
            raise RuntimeError("the alert publisher is not started")
        self._pending.append(
            await self._producer.send(settings.alerts_topic, value, key=key, partition=partition)
        )

    async def publish_status(self, key: bytes, value: bytes, timeout: float) -> None:
        """Send one lifecycle record (sinks/alert_delivery/lifecycle.py) and wait for the broker."""
        if self._producer is None:
            raise RuntimeError("the alert publisher is not started")
        await asyncio.wait_for(
            await self._producer.send(settings.alert_status_topic, value, key=key), timeout
        )

    async def delivered(self) -> None:
        """Wait until every alert published so far is acknowledged by the broker.

        Also those an earlier call, still waiting, took off the list: partitions call this side
        by side, and one that found the list emptied by another must not return before the
        alerts in it (its own among them) are acknowledged."""
        earlier = self._waiting
        if not self._pending and (earlier is None or earlier.done()):
            if earlier is not None:
                self._waiting = None
                earlier.result()
            return
        pending, self._pending = self._pending, []
        waiting = asyncio.gather(*pending, *([earlier] if earlier is not None else []))
        self._waiting = waiting
        try:
            await asyncio.shield(waiting)
        finally:
            if self._waiting is waiting and waiting.done():
                self._waiting = None


publisher = AlertPublisher()
app.service(publisher)  # type: ignore[arg-type]
