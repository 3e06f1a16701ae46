"""`partnerwatch alerts redeliver`: send parked alerts again.

Reads `<prefix>alerts.parked` in its own consumer group (`<app id>-alert-redeliver`, committed
after each record), up to the end it saw when it started, so a run ends and two runs never send
the same parked record twice: the group splits partitions between concurrent runs and a later
run starts where the last one committed. A record for another output (with `--output`) or one
that fails again is parked anew at the end of the topic, so nothing parked is ever dropped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from aiokafka import AIOKafkaProducer

from pipeline.config import Settings
from sinks.alert_delivery.parking import park, parked_record
from sinks.alert_delivery.sender import Outcome, deliver
from sinks.alert_outputs.routes import AlertRoutes
from sinks.kafka_io import aio_consumer, aio_producer, ensure_topics

log = structlog.get_logger(__name__)


@dataclass
class RedeliverReport:
    delivered: int = 0
    parked_again: int = 0
    passed_over: int = 0


async def redeliver(
    settings: Settings, routes: AlertRoutes, output: str | None = None, join_timeout: float = 30.0
) -> RedeliverReport:
    topic = settings.parked_topic
    await asyncio.get_running_loop().run_in_executor(None, ensure_topics, settings, [topic])
    consumer = aio_consumer(
        settings, topic, role="alert-redeliver", group=settings.alert_redeliver_group
    )
    producer = aio_producer(settings, role="alert-redeliver")
    report = RedeliverReport()
    await consumer.start()
    await producer.start()
    session = aiohttp.ClientSession()
    try:
        deadline = time.monotonic() + join_timeout
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(
                timeout_ms=200
            )  # joins the group; a parked record is not read before `ends`
            if consumer.assignment():
                break
        assigned = consumer.assignment()
        if not assigned:
            return report
        ends = await consumer.end_offsets(list(assigned))
        # a getmany above may have fetched nothing but moved no position; start from committed offsets
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

        async def remaining() -> bool:
            for tp in consumer.assignment():
                if await consumer.position(tp) < ends.get(tp, 0):
                    return True
            return False

        while await remaining():
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends.get(tp, 0):
                        break  # parked after this run started (possibly by this run)
                    await _one(record.value, routes, output, session, producer, topic, report)
                    await consumer.commit({tp: record.offset + 1})
        return report
    finally:
        await session.close()
        await consumer.stop()
        await producer.stop()


async def _one(
    value: bytes,
    routes: AlertRoutes,
    output: str | None,
    session: aiohttp.ClientSession,
    producer: AIOKafkaProducer,
    topic: str,
    report: RedeliverReport,
) -> None:
    parked: dict[str, Any] = orjson.loads(value)
    name = str(parked.get("output", ""))
    if output is not None and name != output:
        await park(producer, topic, parked)  # another output's: keep it parked, unchanged
        report.passed_over += 1
        return
    target = routes.outputs.get(name)
    if target is None:
        outcome = Outcome(name, False, 0, f"output {name!r} is not in the routes file")
    else:
        outcome = await deliver(session, target, parked["alert"], routes.retry_policy(name))
    if outcome.delivered:
        report.delivered += 1
        log.info("alert_feed.redelivered", output=name, alert_id=parked["alert"].get("alert_id"))
    else:
        await park(
            producer,
            topic,
            parked_record(parked["alert"], outcome, parked.get("source", {}), parked),
        )
        report.parked_again += 1
