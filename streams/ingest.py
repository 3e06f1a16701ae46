"""Ingest agent: pw.actions -> validate -> dead-letter, or dedup + sequence -> pw.ledger.

Sequencing state (each account's chain head, the event ids of the dedup window) is derived from
the ledger itself: when the agent first sees a partition, it reads that partition of pw.ledger
(committed records only) into a `LedgerState`, then continues. Under exactly-once processing the
ledger entry and the source offset commit in one Kafka transaction, so after a crash the ledger
holds exactly the sequenced events whose offsets were committed, and re-reading it puts the
worker right after the last of them: `seq` never forks or skips, and a redelivered event is
recognized as seen. (Faust's own table writes go outside the transaction, which is why no Faust
table held this state; tests/integration/test_restart.py kills the worker to check.) A batch's
entries and table changes are written by `BatchWriter` (streams/batch_writer.py), as record
batches in the source partition's transaction.

Each entry also records its source offset (`ingest_offset`), so the ledger, not the consumer
group, says where sequencing stands: a message at or below the ledger's position is a
redelivery and is skipped, and source messages the stream did not deliver (we saw the group's
committed offset run ahead of the committed ledger after a SIGKILL) are read back directly and
sequenced first (`_catch_up`, counted in `pw_ingest_catch_up_total`). Rejected messages after
the last accepted one may be dead-lettered twice after a crash; accepted events never are.

The ledger topic is compacted by account after the dedup window, so it stays small while
keeping every chain head.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import structlog

from pipeline import deadletter
from pipeline.event import Rejected, format_ms, parse_action
from pipeline.ledger import LedgerState, encode_entry
from pipeline.masking import Masker
from sinks import metrics
from streams import state_repair
from streams.app import app, settings
from streams.batch_writer import BatchWriter
from streams.detect import Detection
from streams.partition_read import read_partition
from streams.topics import actions_topic, deadletter_topic

log = structlog.get_logger(__name__)

#: partition -> its sequencing state, loaded from the ledger on first use after assignment.
_states: dict[int, LedgerState] = {}
#: Bank and personal data are masked here, before sequencing: nothing downstream sees them.
_masker = Masker(settings.mask_key)


def _now() -> str:
    return format_ms(time.time_ns() // 1_000_000)


async def load_state(partition: int) -> LedgerState:
    """Read one partition of the ledger, committed records only, into a `LedgerState`."""
    started = time.monotonic()
    state = LedgerState(settings.dedup_window_days)
    count = 0
    async for record in read_partition(settings.ledger_topic, partition, None, None):
        state.observe(orjson.loads(record.value))
        count += 1
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


async def _ingest_one(
    state: LedgerState,
    key: bytes | None,
    value: bytes | None,
    partition: int,
    offset: int,
    writer: BatchWriter,
    detection: Detection,
    event: Any,
) -> None:
    """Validate one source message; dead-letter it, drop it as seen, or sequence it and detect."""
    state.next_offset = offset + 1
    metrics.EVENTS_CONSUMED.inc()
    try:
        action = parse_action(value or b"", settings.max_event_bytes)
        if key != action["account_id"].encode():
            raise Rejected("wrong_key", "the message key must be the event's account_id")
    except Rejected as exc:
        await deadletter_topic.send(
            key=key,
            value=deadletter.record(exc.reason, exc.detail, settings.actions_topic, partition, offset, value),
            partition=partition,  # same partition: same transaction as the source offset
        )
        return
    entry = state.accept(_masker.mask_event(action), _now(), offset)
    if entry is None:
        metrics.EVENTS_DUPLICATE.inc()
        return
    writer.append_entry(partition, key, encode_entry(entry))
    metrics.EVENTS_ACCEPTED.inc()
    await detection.entry(entry, event)


async def _catch_up(
    state: LedgerState, partition: int, until: int, writer: BatchWriter, detection: Detection, event: Any
) -> None:
    """Sequence source messages [state.next_offset, until) that the stream did not deliver.

    The ledger records the source offset of every entry, so the worker knows exactly where the
    committed sequence ends, whatever offset the consumer group had committed. Messages the
    stream skipped are read here directly and sequenced before the current one, inside the
    current one's transaction.
    """
    start = state.next_offset
    count = 0
    async for record in read_partition(settings.actions_topic, partition, start, until):
        await _ingest_one(state, record.key, record.value, partition, record.offset, writer, detection, event)
        count += 1
    state.next_offset = until
    metrics.INGEST_CATCH_UP.inc(count)
    log.warning("ingest.catch_up", partition=partition, first=start, until=until, records=count)


#: Source messages handled per batch (`take_events`: acked once the batch is done, so its
#: offsets commit with its ledger entries) and how long a batch waits to fill.
BATCH_EVENTS = 500
BATCH_SECONDS = 0.01


@app.agent(actions_topic)
async def ingest(stream: Any) -> None:
    async for events in stream.take_events(BATCH_EVENTS, within=BATCH_SECONDS):
        writer = BatchWriter()
        detection = Detection(writer)
        for event in events:
            msg = event.message
            state = _states.get(msg.partition)
            if state is None:
                state = _states[msg.partition] = await load_state(msg.partition)
                # Taken up after an assignment: the recovered detection state must match the
                # ledger before any event of the partition is detected (streams/state_repair.py).
                await state_repair.check_partition(msg.partition, state.heads, writer)
            if msg.offset < state.next_offset:
                continue  # already sequenced: a redelivery after a restart
            if msg.offset > state.next_offset and state.next_offset > 0:
                await _catch_up(state, msg.partition, msg.offset, writer, detection, event)
            await _ingest_one(state, msg.key, msg.value, msg.partition, msg.offset, writer, detection, event)
        await detection.flush()
        await writer.write()
