"""Appends a batch's ledger entries to pw.ledger, one Kafka record batch per partition.

Faust's `Topic.send` costs about 450 microseconds per message in the worker (a FutureMessage,
codecs, sensors, a lock per send and the producer's own per-message path): measured, it was
more than half of the ingest agent's time. Here the entries of one `take_events` batch are
collected per partition and handed to the same aiokafka producer Faust would have used, as
ready-built record batches (`create_batch`/`send_batch`), so a message costs one `append`.

Under exactly-once processing that producer is the source partition's transactional producer
(Faust names it `<app id>-<topic group>-<partition>`), taken under Faust's own lock for it, so
the entries join the transaction that also commits the source offsets, exactly as a
`ledger_topic.send` would (tests/integration/test_restart.py kills the worker to check).
Order is kept: the entries of a partition go out in the order they were added, and a batch
waits for the previous one of its partition to drain before it is queued.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

from streams.app import app, settings

Record = tuple[bytes | None, bytes]


class LedgerWriter:
    """Collects `(key, value)` entries per partition; `write` sends them in record batches."""

    def __init__(self) -> None:
        self.pending: dict[int, list[Record]] = defaultdict(list)

    def add(self, partition: int, key: bytes | None, value: bytes) -> None:
        self.pending[partition].append((key, value))

    async def write(self) -> None:
        """Queue every collected entry on its partition's producer (delivery is the producer's
        and the transaction's business: a commit flushes the batches it holds)."""
        topic = settings.ledger_topic
        for partition, records in self.pending.items():
            producer, lock = _producer_for(partition)
            async with lock:
                batch = producer.create_batch()
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        await producer.send_batch(batch, topic, partition=partition)
                        batch = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            raise ValueError(f"a ledger entry of {len(value)} bytes exceeds the producer's batch size")
                await producer.send_batch(batch, topic, partition=partition)
        self.pending.clear()


def _producer_for(partition: int) -> tuple[Any, Any]:
    """The aiokafka producer (and the lock Faust holds while it commits) that `Topic.send` would
    use for `partition` of the ledger."""
    faust_producer: Any = app.producer
    if not app.in_transaction:
        return faust_producer._ensure_producer(), contextlib.nullcontext()
    group = app.assignor.group_for_topic(settings.ledger_topic)
    transactional_id = f"{app.conf.id}-{group}-{partition}"
    producer = faust_producer._transaction_producers.get(transactional_id)
    if producer is None:
        raise RuntimeError(f"no transactional producer {transactional_id} for ledger partition {partition}")
    return producer, faust_producer._trn_locks[transactional_id]
