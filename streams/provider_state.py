"""The provider stage's state on the compacted `pw.provider-state` topic (streams/provider_stage.py):
how a state key is written as records, checkpointed, and read back on a take-over.

State and recovery: every `PW_PROVIDER_CHECKPOINT_SECONDS` the changed keys go to the compacted
`pw.provider-state` topic (a provider as one record per rule, `snapshot_records`) in one Kafka
transaction together with the group's offsets of the entries folded so far
(`send_offsets_to_transaction`, `Settings.provider_transactional_id`). After a crash (SIGKILL
included) the next holder starts its transactional producer, which fences the old one and aborts
its open transaction, reads the state topic (committed records) and resumes at exactly the
committed offsets: the state is as of the last checkpoint and every later entry is folded again,
once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from detectors.provider_wide import MODULES
from detectors.provider_wide.run import PROVIDER
from pipeline.config import Settings
from sinks.kafka_io import aio_consumer


def snapshot_records(key: str, value: Any) -> list[tuple[str, Any]]:
    """One state key as records of the snapshot topic (None: a tombstone). A provider's state is
    one record per rule and one for the rest (its open alerts), so no record holds all of a
    large provider's state."""
    if not key.startswith(PROVIDER):
        return [(key, value)]
    det = {} if value is None else value.get("det", {})
    records: list[tuple[str, Any]] = [(f"{key}#det#{name}", det.get(name)) for name in MODULES]
    records.append(
        (f"{key}#rest", None if value is None else {k: v for k, v in value.items() if k != "det"})
    )
    return records


def assemble(records: Mapping[str, Any]) -> dict[str, Any]:
    """The states `snapshot_records` wrote, from the latest record of every key."""
    states: dict[str, Any] = {}
    for key, value in records.items():
        base, _, part = key.partition("#")
        if not part:
            states[base] = value
            continue
        state = states.setdefault(base, {"det": {}})
        if part == "rest":
            state.update(value)
        else:
            state["det"][part.split("#", 1)[1]] = value
    return states


async def load_states(settings: Settings) -> dict[str, Any]:
    """Every key's latest committed record of the state topic (tombstones drop a key)."""
    s = settings
    tp = TopicPartition(s.provider_state_topic, 0)
    reader = aio_consumer(s, role="provider-state-reader")
    await reader.start()
    states: dict[str, Any] = {}
    try:
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=1000, max_records=10_000)
            for record in batch.get(tp, ()):
                key = record.key.decode()
                if record.value is None:
                    states.pop(key, None)
                else:
                    states[key] = orjson.loads(record.value)
    finally:
        await reader.stop()
    return assemble(states)


async def write_checkpoint(
    producer: AIOKafkaProducer,
    settings: Settings,
    changed: Mapping[str, Any],
    folded: Mapping[int, int],
) -> None:
    """The changed state keys and the folded ledger offsets, in one Kafka transaction of `producer`."""
    s = settings
    offsets = {
        TopicPartition(s.ledger_topic, p): OffsetAndMetadata(o, "") for p, o in folded.items()
    }
    async with producer.transaction():
        for key, value in changed.items():
            for record_key, record in snapshot_records(key, value):
                await producer.send(
                    s.provider_state_topic,
                    None if record is None else orjson.dumps(record),
                    key=record_key.encode(),
                    partition=0,
                )
        await producer.send_offsets_to_transaction(offsets, s.provider_group)
