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

The feed also reads `<prefix>alerts.status` (ack, resolve, reopen; sinks/alert_delivery/lifecycle.py)
and sends those to the outputs that follow an alert's lifecycle (Alertmanager, OCSF). It remembers
the last lifecycle action of up to `SEEN_VERSIONS` alerts, so a later version of a resolved alert
is sent as resolved too (not re-fired), and the latest version it delivered of as many alerts, for
a status record that comes without one (`LATEST_KEPT`). Both are memory: after a restart a version of an alert
resolved before it is sent as open (the resolve itself is not sent again).
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
from sinks.alert_delivery.lifecycle import lifecycle_of, parse_status, with_lifecycle
from sinks.alert_delivery.parking import park, parked_record
from sinks.alert_delivery.sender import deliver
from sinks.alert_outputs.base import Alert
from sinks.alert_outputs.routes import AlertRoutes
from sinks.kafka_io import aio_consumer, aio_producer, ensure_topics

log = structlog.get_logger(__name__)


#: (alert_id, count) versions remembered, to skip identical repeats on pw.alerts.
SEEN_VERSIONS = 100_000
#: latest delivered versions remembered (for status records that come without the alert)
LATEST_KEPT = 10_000


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
        self.finished: OrderedDict[tuple[str, int | str], None] = OrderedDict()
        #: alert_id -> its last lifecycle action (status, actor, note, at), while not reopened
        self.lifecycle: OrderedDict[str, dict[str, str]] = OrderedDict()
        #: alert_id -> the latest version delivered
        self.latest: OrderedDict[str, Alert] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await asyncio.get_running_loop().run_in_executor(None, ensure_topics, s, [s.parked_topic])
        self.consumer = aio_consumer(s, role="alert-feed", group=s.alert_feed_group)
        self.producer = aio_producer(s, role="alert-feed-parking")
        self.session = aiohttp.ClientSession()
        self.consumer.subscribe([s.alerts_topic, s.alert_status_topic], listener=_Revoke(self))
        await self.producer.start()
        await self.consumer.start()
        log.info(
            "alert_feed.started",
            group=s.alert_feed_group,
            outputs=sorted(self.routes.outputs),
            parked=s.parked_topic,
        )
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
            if (
                tp in self.consumer.assignment()
            ):  # else revoked meanwhile: the next owner re-reads it
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
        if record.topic == self.settings.alert_status_topic:
            await self._status(record)
            return
        try:
            alert = orjson.loads(record.value)
            version: tuple[str, int | str] = (str(alert["alert_id"]), int(alert["count"]))
            state = self.lifecycle.get(version[0])
            if state is not None:
                alert = with_lifecycle(alert, state)  # resolved or acknowledged before this version
            targets = self.routes.targets(alert)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, KeyError):
            log.error("alert_feed.bad_record", partition=record.partition, offset=record.offset)
            return
        if version in self.finished:
            log.info("alert_feed.repeat_skipped", alert_id=version[0], count=version[1])
            return
        await self._send(record, alert, targets, version)
        _remember(self.latest, version[0], alert, LATEST_KEPT)

    async def _status(self, record: Any) -> None:
        """A lifecycle action: the alert once more, with it, to the outputs that follow it."""
        try:
            status = parse_status(record.value)
        except ValueError as exc:
            log.error(
                "alert_feed.bad_status_record",
                partition=record.partition,
                offset=record.offset,
                error=str(exc),
            )
            return
        alert_id = status["alert_id"]
        version: tuple[str, int | str] = (alert_id, f"{status['status']}@{status['at']}")
        if version in self.finished:
            return
        state = lifecycle_of(status)
        if state["status"] == "reopened":
            self.lifecycle.pop(alert_id, None)
        else:
            _remember(self.lifecycle, alert_id, state, SEEN_VERSIONS)
        known = self.latest.get(alert_id)
        stored: Alert | None = status.get("alert")
        alert = stored or known
        if (
            known is not None
            and stored
            and int(known.get("count", 0)) > int(stored.get("count", 0))
        ):
            alert = known  # the feed delivered a later version than the warehouse had stored
        if alert is None:
            log.warning(
                "alert_feed.status_without_alert", alert_id=alert_id, status=state["status"]
            )
            return
        alert = with_lifecycle({k: v for k, v in alert.items() if k != "lifecycle"}, state)
        try:
            targets = self.routes.lifecycle_targets(alert)
        except (TypeError, ValueError, AttributeError, KeyError):
            log.error(
                "alert_feed.bad_status_record", partition=record.partition, offset=record.offset
            )
            return
        await self._send(record, alert, targets, version)
        log.info(
            "alert_feed.lifecycle_sent", alert_id=alert_id, status=state["status"], outputs=targets
        )

    async def _send(
        self, record: Any, alert: Alert, targets: list[str], version: tuple[str, int | str]
    ) -> None:
        if self.session is None or self.producer is None:
            raise RuntimeError("the alert feed is not running")
        outcomes = await asyncio.gather(
            *(
                deliver(
                    self.session, self.routes.outputs[name], alert, self.routes.retry_policy(name)
                )
                for name in targets
            )
        )
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        for outcome in outcomes:
            if not outcome.delivered:
                await park(
                    self.producer, self.settings.parked_topic, parked_record(alert, outcome, source)
                )
        self.finished[version] = None
        if len(self.finished) > SEEN_VERSIONS:
            self.finished.popitem(last=False)


def _remember(memory: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > limit:
        memory.popitem(last=False)


def run_feed(settings: Settings, routes: AlertRoutes) -> None:
    """Run until SIGTERM or SIGINT (the `partnerwatch alerts feed` command)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await AlertFeed(settings, routes).run(stop)

    asyncio.run(main())
