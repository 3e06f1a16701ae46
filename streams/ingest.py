"""Ingest agent: pw.actions -> validate -> dead-letter, or dedup + sequence -> pw.ledger.

Sequencing state (each account's chain head, the event ids of the dedup window) is derived from
the ledger itself: when the agent first sees a partition, it reads that partition of pw.ledger
(committed records only) into a `LedgerState`, then continues. Under exactly-once processing the
ledger entry and the source offset commit in one Kafka transaction, so after a crash the ledger
holds exactly the sequenced events whose offsets were committed, and re-reading it puts the
worker right after the last of them: `seq` never forks or skips, and a redelivered event is
recognized as seen. (Faust's table changelogs are written outside the transaction, which is why
no Faust table holds this state; tests/integration/test_restart.py kills the worker to check.)
The ledger topic is compacted by account after the dedup window, so it stays small while
keeping every chain head.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import deadletter
from pipeline.event import Rejected, parse_action
from pipeline.ledger import LedgerState, encode_entry
from sinks import metrics
from streams.app import app, settings
from streams.topics import actions_topic, deadletter_topic, ledger_topic

log = structlog.get_logger(__name__)

#: partition -> its sequencing state, loaded from the ledger on first use after assignment.
_states: dict[int, LedgerState] = {}


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


async def load_state(partition: int) -> LedgerState:
    """Read one partition of the ledger, committed records only, into a `LedgerState`."""
    started = time.monotonic()
    state = LedgerState(settings.dedup_window_days)
    tp = TopicPartition(settings.ledger_topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_broker,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        count = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=20_000)
            for record in batch.get(tp, ()):
                state.observe(orjson.loads(record.value))
                count += 1
            if time.monotonic() - started > 600:
                raise RuntimeError(f"ledger partition {partition} did not load in 600 s")
    finally:
        await consumer.stop()
    log.info(
        "ingest.state_loaded", partition=partition, entries=count, accounts=len(state.heads),
        seconds=round(time.monotonic() - started, 3),
    )
    return state


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
    """A revoked partition's state may move on elsewhere: reload it if it comes back."""
    for tp in revoked:
        if tp.topic == settings.actions_topic:
            _states.pop(tp.partition, None)


@app.agent(actions_topic)
async def ingest(stream: Any) -> None:
    async for event in stream.events():
        msg = event.message
        try:
            action = parse_action(msg.value or b"", settings.max_event_bytes)
            if msg.key != action["account_id"].encode():
                raise Rejected("wrong_key", "the message key must be the event's account_id")
        except Rejected as exc:
            await deadletter_topic.send(
                key=msg.key,
                value=deadletter.record(
                    exc.reason, exc.detail, msg.topic, msg.partition, msg.offset, msg.value
                ),
                partition=msg.partition,  # same partition: same transaction as the source offset
            )
            continue
        state = _states.get(msg.partition)
        if state is None:
            state = _states[msg.partition] = await load_state(msg.partition)
        entry = state.accept(action, _now())
        if entry is None:
            metrics.EVENTS_DUPLICATE.inc()
            continue
        await ledger_topic.send(key=msg.key, value=encode_entry(entry), partition=msg.partition)
        metrics.EVENTS_ACCEPTED.inc()
