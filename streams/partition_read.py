"""Reading one partition of a topic directly, committed records only, outside any consumer group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import TopicPartition

from sinks.kafka_io import aio_consumer
from streams.app import settings


async def read_partition(
    topic: str, partition: int, start: int | None, until: int | None
) -> AsyncIterator[Any]:
    """Committed records of one partition from `start` (None: the beginning) up to `until`
    (None: the end as of now), read with a consumer of its own, outside any group."""
    tp = TopicPartition(topic, partition)
    consumer = aio_consumer(
        settings, role="partition-reader", max_partition_fetch_bytes=8 * 1024 * 1024
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        end = until if until is not None else (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=20_000)
            for record in batch.get(tp, ()):
                if record.offset >= end:
                    return
                yield record
    finally:
        await consumer.stop()
