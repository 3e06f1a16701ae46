"""The alert feed process: pw.alerts -> routes -> outputs, in order per account, nothing lost.

Its own consumer group (`<app id>-alert-feed`, read_committed, manual commits), so a slow
receiver never slows detection. Alerts are keyed by account, so an account's alerts share a
partition: each partition is worked through by one task, record after record, and a record is
finished only when every output it routes to has delivered it or parked it (retry budget spent).
A failing output therefore holds its partition back (later alerts of those accounts wait, in
order) while other partitions go on; the partition is paused meanwhile so the consumer does not
fetch ahead. The offset is committed after each finished record, so a crash re-sends at most the
record in hand (at-least-once; receivers dedup by `alert_id` and `count`).

The worker publishes alerts outside its Kafka transaction (streams/alert_publisher.py), so after
a worker crash an alert version can appear twice on pw.alerts, identical; the feed remembers the
last `SEEN_VERSIONS` versions it finished and skips such a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import OrderedDict
from typing import Any

import aiohttp
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from pipeline.config import Settings
from sinks.alert_delivery.parking import park, parked_record
from sinks.alert_delivery.sender import deliver
from sinks.alert_outputs.routes import AlertRoutes
from sinks.kafka_io import aio_consumer, aio_producer, ensure_topics

log = structlog.get_logger(__name__)


#: (alert_id, count) versions remembered, to skip identical repeats on pw.alerts.
SEEN_VERSIONS = 100_000


class _Revoke(ConsumerRebalanceListener):
    def __init__(self, feed: AlertFeed) -> None:
        self.feed = feed

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.feed.drop(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("alert_feed.assigned", partitions=sorted(tp.partition for tp in assigned))


class AlertFeed:
    """Consume, route, deliver, park, commit."""

    def __init__(self, settings: Settings, routes: AlertRoutes) -> None:
        self.settings = settings
        self.routes = routes
        self.tasks: dict[TopicPartition, asyncio.Task[None]] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.finished: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await asyncio.get_running_loop().run_in_executor(None, ensure_topics, s, [s.parked_topic])
        self.consumer = aio_consumer(s, role="alert-feed", group=s.alert_feed_group)
        self.producer = aio_producer(s, role="alert-feed-parking")
        self.session = aiohttp.ClientSession()
        self.consumer.subscribe([s.alerts_topic], listener=_Revoke(self))
        await self.producer.start()
        await self.consumer.start()
        log.info("alert_feed.started", group=s.alert_feed_group, outputs=sorted(self.routes.outputs), parked=s.parked_topic)
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batch.items():
                    if records:
                        self.consumer.pause(tp)
                        self.tasks[tp] = asyncio.create_task(self._partition(tp, records))
        finally:
            await self.drop(list(self.tasks))
            await self.consumer.stop()
            await self.producer.stop()
            await self.session.close()
            log.info("alert_feed.stopped")

    async def drop(self, partitions: list[TopicPartition]) -> None:
        """Stop working on `partitions` (revoked, or shutting down): what is not committed is
        re-read by the next owner."""
        tasks = [self.tasks.pop(tp) for tp in partitions if tp in self.tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _partition(self, tp: TopicPartition, records: list[Any]) -> None:
        if self.consumer is None:
            raise RuntimeError("the alert feed is not running")
        try:
            for record in records:
                await self._record(record)
                await self.consumer.commit({tp: record.offset + 1})
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not committed: seek back so the record is tried again rather than skipped.
            log.exception("alert_feed.partition_failed", partition=tp.partition)
            if tp in self.consumer.assignment():  # else revoked meanwhile: the next owner re-reads it
                self.consumer.seek(tp, record.offset)
            await asyncio.sleep(1.0)
        finally:
            if self.tasks.get(tp) is asyncio.current_task():
                del self.tasks[tp]
                if tp in self.consumer.assignment():
                    self.consumer.resume(tp)

    async def _record(self, record: Any) -> None:
        if self.session is None or self.producer is None:
            raise RuntimeError("the alert feed is not running")
        try:
            alert = orjson.loads(record.value)
            version = (str(alert["alert_id"]), int(alert["count"]))
            targets = self.routes.targets(alert)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, KeyError):
            log.error("alert_feed.bad_record", partition=record.partition, offset=record.offset)
            return
        if version in self.finished:
            log.info("alert_feed.repeat_skipped", alert_id=version[0], count=version[1])
            return
        outcomes = await asyncio.gather(
            *(
                deliver(self.session, self.routes.outputs[name], alert, self.routes.retry_policy(name))
                for name in targets
            )
        )
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        for outcome in outcomes:
            if not outcome.delivered:
                await park(self.producer, self.settings.parked_topic, parked_record(alert, outcome, source))
        self.finished[version] = None
        if len(self.finished) > SEEN_VERSIONS:
            self.finished.popitem(last=False)


def run_feed(settings: Settings, routes: AlertRoutes) -> None:
    """Run until SIGTERM or SIGINT (the `partnerwatch alerts feed` command)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await AlertFeed(settings, routes).run(stop)

    asyncio.run(main())
