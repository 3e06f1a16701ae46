"""The two ways to run an exactly-once consume-transform-produce loop, measured on the local broker.

Both copy N messages of the benchmark mix from a 4-partition topic to another, committing each
batch's output and its source offsets in one Kafka transaction, with no work per message (so the
figures are the client's own cost, the ceiling of the ingest service's loop):

- aiokafka: `getmany` over the group's partitions, one transactional producer per input partition
  (transactional id from the group and the partition: a new owner fences the old one), the
  output appended as ready-built record batches (`create_batch`/`send_batch`);
- confluent-kafka: `consume` in batches, one transactional producer for the process carrying the
  consumer's group metadata (KIP-447), one `produce` call per message.

    python -m bench.eos_clients [--count 200000] [--batch 2000]

Prints and writes bench/results/<date>-eos-clients-batch<B>.json: events/s and the process's CPU per
message for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.workload import RESULTS, stream
from pipeline.config import Settings
from sinks.kafka_io import aio_batch_producer, aio_consumer, ensure_topics, producer

PARTITIONS = 4


def _topics(settings: Settings, name: str) -> tuple[str, str]:
    from kafka.admin import NewTopic

    from sinks.kafka_io import admin

    source, target = f"tbench-eos-{name}.in", f"tbench-eos-{name}.out"
    client = admin(settings)
    try:
        client.create_topics(
            [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in (source, target)]
        )
    finally:
        client.close()
    return source, target


def _fill(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    prod = producer(settings, linger_ms=20, batch_size=256 * 1024)
    for key, value in messages:
        prod.send(topic, key=key, value=value)
    prod.flush()
    prod.close()


def _drop(settings: Settings, *topics: str) -> None:
    from sinks.kafka_io import admin

    client = admin(settings)
    try:
        client.delete_topics(list(topics))
    finally:
        client.close()


async def _aiokafka(settings: Settings, source: str, target: str, count: int, batch: int) -> float:
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    group = f"tbench-eos-aio-{uuid.uuid4().hex[:8]}"
    consumer = aio_consumer(
        settings,
        source,
        role="bench-eos",
        group=group,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    producers: dict[int, Any] = {}
    try:
        for p in range(PARTITIONS):
            prod = aio_batch_producer(settings, role="bench-eos", transactional_id=f"{group}-{p}")
            await prod.start()
            producers[p] = prod
        done, started = 0, time.monotonic()
        while done < count:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch * PARTITIONS)
            commits = []
            for tp, records in fetched.items():
                prod = producers[tp.partition]

                async def one(
                    tp: TopicPartition = tp, records: list[Any] = records, prod: Any = prod
                ) -> None:
                    await prod.begin_transaction()
                    out = prod.create_batch()
                    for r in records:
                        if out.append(key=r.key, value=r.value, timestamp=None) is None:
                            await prod.send_batch(out, target, partition=tp.partition)
                            out = prod.create_batch()
                            out.append(key=r.key, value=r.value, timestamp=None)
                    await prod.send_batch(out, target, partition=tp.partition)
                    await prod.send_offsets_to_transaction(
                        {tp: OffsetAndMetadata(records[-1].offset + 1, "")}, group
                    )
                    await prod.commit_transaction()

                commits.append(one())
                done += len(records)
            await asyncio.gather(*commits)
        return time.monotonic() - started
    finally:
        for prod in producers.values():
            await prod.stop()
        await consumer.stop()


def _confluent(settings: Settings, source: str, target: str, count: int, batch: int) -> float:
    from confluent_kafka import Consumer, Producer

    group = f"tbench-eos-ck-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_broker,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
        }
    )
    prod = Producer(
        {
            "bootstrap.servers": settings.kafka_broker,
            "transactional.id": group,
            "linger.ms": 0,
            "batch.size": 1024 * 1024,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    prod.init_transactions()
    consumer.subscribe([source])
    try:
        done, started = 0, time.monotonic()
        while done < count:
            records = consumer.consume(num_messages=batch * PARTITIONS, timeout=0.5)
            if not records:
                continue
            prod.begin_transaction()
            for r in records:
                prod.produce(target, value=r.value(), key=r.key(), partition=r.partition() or 0)
            prod.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
            )
            prod.commit_transaction()
            done += len(records)
        return time.monotonic() - started
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument(
        "--batch", type=int, default=2000, help="records per partition and transaction"
    )
    args = parser.parse_args()
    settings = Settings.from_env()
    ensure_topics(settings)
    messages = stream(args.count)
    figures: dict[str, Any] = {
        "events": args.count,
        "batch": args.batch,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for name in ("aiokafka", "confluent_kafka"):
        source, target = _topics(settings, f"{name}-{uuid.uuid4().hex[:8]}")
        _fill(settings, source, messages)
        cpu0 = time.process_time()
        if name == "aiokafka":
            seconds = asyncio.run(_aiokafka(settings, source, target, args.count, args.batch))
        else:
            seconds = _confluent(settings, source, target, args.count, args.batch)
        cpu = time.process_time() - cpu0
        _drop(settings, source, target)
        figures[name] = {
            "seconds": round(seconds, 3),
            "events_per_second": round(args.count / seconds),
            "cpu_us_per_event": round(cpu / args.count * 1e6, 2),
        }
        print(name, figures[name], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-eos-clients-batch{args.batch}.json").write_text(
        orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    print(os.linesep.join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
