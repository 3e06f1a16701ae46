"""The highwater table recovery reads a changelog partition up to, on the real broker.

Issue 15, finding 20: a restarted worker logged a highwater of -1 on every changelog partition,
skipped recovery and started with empty tables. Cause: under exactly-once, Faust takes the
highwater from `AIOKafkaConsumer.last_stable_offset`, a value cached from the last fetch
response, None for a partition the new consumer has not fetched yet (Faust turns None into -1).
Whether the fetcher had answered before recovery asked was a race. `streams.faust_internals.ConsumerThread`
asks the broker instead.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.faust_internals import ConsumerThread

pytestmark = pytest.mark.integration


def thread_over(cls: type[AIOKafkaConsumerThread], consumer: AIOKafkaConsumer) -> Any:
    """A consumer thread of `cls` around `consumer`, as in a worker with exactly-once processing
    (only what `_highwaters` reads is set: the aiokafka consumer and the Faust consumer's mode)."""
    thread: Any = object.__new__(cls)
    thread._consumer = consumer
    thread.consumer = SimpleNamespace(in_transaction=True)
    return thread


async def highwaters_of_a_fresh_consumer(broker: str) -> dict[str, Any]:
    topic = f"thw{uuid.uuid4().hex[:10]}-changelog"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=broker, transactional_id=f"{topic}-tx")
    await producer.start()
    seen: dict[str, Any] = {}
    try:
        async with producer.transaction():  # offsets 0..2, the commit marker at 3
            for n in range(3):
                await producer.send_and_wait(topic, key=b"k%d" % n, value=b"v", partition=0)
        await producer.begin_transaction()  # left open, as by a worker killed mid-batch: 4..5
        for n in range(2):
            await producer.send_and_wait(topic, key=b"open%d" % n, value=b"v", partition=0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level="read_committed", enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])  # what recovery has at that moment: assigned, never fetched
            seen["faust"] = dict(await thread_over(AIOKafkaConsumerThread, consumer)._highwaters([tp]))[tp]
            seen["ours"] = dict(await thread_over(ConsumerThread, consumer)._highwaters([tp]))[tp]
        finally:
            await consumer.stop()
        await producer.abort_transaction()
    finally:
        await producer.stop()
        admin = KafkaAdminClient(bootstrap_servers=broker)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
    return seen


def test_recovery_highwater_is_the_brokers_last_stable_offset(kafka_broker: str) -> None:
    seen = asyncio.run(highwaters_of_a_fresh_consumer(kafka_broker))
    # Faust's own answer on a partition not fetched yet: nothing, logged as highwater -1.
    assert seen["faust"] is None
    # Ours: the last stable offset, past the committed transaction and its marker, before the
    # open one (its records are not the table's unless it commits).
    assert seen["ours"] == 4
