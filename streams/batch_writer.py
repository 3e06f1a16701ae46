"""Writes one ingest batch's output to Kafka: ledger entries and table changes, in one go.

Faust's `Topic.send` costs about 450 microseconds per message in the worker (a FutureMessage,
codecs, sensors, a lock per send and the producer's own per-message path); measured, it was
more than half of the ingest agent's time, and a table write (`send_changelog`) takes the same
road. Here a batch's ledger entries and its changes to the detection tables are collected per
partition and handed to aiokafka as ready-built record batches (`create_batch`/`send_batch`),
so a message costs one `append`, and a key changed several times in a batch is written once.

Everything goes through the transactional producer of the *source* partition (Faust names it
`<app id>-<topic group of pw.actions>-<partition>`; ledger, changelog and source partitions
share the number), under the lock Faust holds while it commits that producer's transaction. So
the ledger entries, the table changes and the source offsets commit together or not at all:
after a crash the tables come back (Faust's recovery reads the changelogs read_committed, up to
the last stable offset the broker reports: streams/app.py) exactly as of the last committed batch,
with no state ahead of the ledger; ingest checks that against the ledger all the same
(streams/state_repair.py). Faust's own
`send_changelog` writes outside the transaction. Picking the producer by the source topic is
also why the app need not consume pw.ledger: `Topic.send` picks it by the destination topic's
group, which exists only for topics the app consumes.

Order is kept: a partition's ledger entries go out in the order they were added, and a batch
waits for the previous one of its partition to drain before it is queued.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

import orjson

from streams.app import app, settings
from streams.faust_internals import transaction_producer

Record = tuple[bytes | None, bytes | None]


class BatchWriter:
    """One batch's ledger entries and table changes, per partition; `write` sends them."""

    def __init__(self) -> None:
        self.ledger: dict[int, list[Record]] = defaultdict(list)
        #: (changelog topic, partition) -> table key -> new value (None: deleted)
        self.changes: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)

    def append_entry(self, partition: int, key: bytes | None, value: bytes) -> None:
        self.ledger[partition].append((key, value))

    def table_set(self, table: Any, partition: int, key: str, value: Any) -> None:
        """`table[key] = value`, its changelog record on `partition` (the source event's).

        A plain `table[key] = ...` takes the partition from the stream's current event; in a
        batch (`take_events`) that is not the event being handled, and setting it
        (`_set_current_event`) corrupts the batch being filled.
        """
        table.data[key] = value
        self.changes[(table.changelog_topic.get_topic_name(), partition)][key] = value

    def table_delete(self, table: Any, partition: int, key: str) -> None:
        """`table.pop(key)`, a tombstone on `partition`; nothing when the key is absent."""
        if key in table.data:
            del table.data[key]
            self.changes[(table.changelog_topic.get_topic_name(), partition)][key] = None

    async def write(self) -> None:
        """Queue everything collected on its partition's producer (delivery is the producer's
        and the transaction's business: a commit flushes the batches it holds)."""
        by_partition: dict[int, list[tuple[str, list[Record]]]] = defaultdict(list)
        for partition, entries in self.ledger.items():
            by_partition[partition].append((settings.ledger_topic, entries))
        for (topic, partition), changed in self.changes.items():
            by_partition[partition].append((topic, [_changelog_record(k, v) for k, v in changed.items()]))
        for partition, outputs in by_partition.items():
            producer, lock = transaction_producer(app, settings.actions_topic, partition)
            async with lock or contextlib.nullcontext():
                for topic, records in outputs:
                    await _send(producer, topic, partition, records)
        self.ledger.clear()
        self.changes.clear()


def _changelog_record(key: str, value: Any) -> Record:
    """Key and value as the tables' serializers read them back (JSON; None is a tombstone)."""
    return orjson.dumps(key), None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


async def _send(producer: Any, topic: str, partition: int, records: list[Record]) -> None:
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            await producer.send_batch(batch, topic, partition=partition)
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes for {topic} exceeds the producer's batch size")
    await producer.send_batch(batch, topic, partition=partition)

