"""The order of one batch's writes in the ingest service without transactions
(`PW_PROCESSING_GUARANTEE=at_least_once`, streams/ingest_partition.py): the ledger records are
acknowledged before the source offset is committed. A restart resumes after the ledger's last
entry or the committed offset, whichever is further, so an offset committed for records whose
ledger entries were never written would skip them for good."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from pipeline.config import Settings
from pipeline.simulation.traffic import generate
from streams import ingest_partition
from streams.ingest_batch import Ingest, PartitionState
from tests.unit.test_ingest_batch import Rec, records

SETTINGS = Settings.from_env({"PW_PROCESSING_GUARANTEE": "at_least_once"})


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, key: bytes | None, value: bytes | None, timestamp: None) -> object:
        self.records.append((key, value))
        return object()


@dataclass
class Producer:
    """Acknowledges every batch at once, except the ledger's when `ledger_fails`."""

    ledger_topic: str
    ledger_fails: bool
    sent: list[str] = field(default_factory=list)

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        self.sent.append(topic)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic == self.ledger_topic and self.ledger_fails:
            future.set_exception(RuntimeError("the ledger's batch was not written"))
        else:
            future.set_result(SimpleNamespace(offset=0))
        return future


@dataclass
class Consumer:
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class Publisher:
    async def publish(self, key: bytes, value: bytes, partition: int) -> None:
        pass

    async def delivered(self) -> None:
        pass


def batch_of(ledger_fails: bool) -> tuple[ingest_partition.PartitionIngest, Producer, Consumer]:
    """A loaded partition writer over fakes, and its producer and consumer."""
    producer = Producer(SETTINGS.ledger_topic, ledger_fails)
    consumer = Consumer()
    service = SimpleNamespace(
        settings=SETTINGS,
        ingest=Ingest(SETTINGS),
        running_consumer=lambda: consumer,
        count=lambda out: None,
    )
    part = ingest_partition.PartitionIngest(service, TopicPartition(SETTINGS.actions_topic, 0))  # type: ignore[arg-type]
    part.state = PartitionState(0, SETTINGS.dedup_window_days)
    part.producer = producer
    part.checked = True  # no state check against the ledger: the state starts empty
    return part, producer, consumer


def fifty() -> list[Rec]:
    return records([e for e, _ in generate(50, seed=3)])


def test_the_offset_is_committed_after_the_ledger_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_partition, "publisher", Publisher())
    part, producer, consumer = batch_of(ledger_fails=False)
    asyncio.run(part._batch(fifty()))
    assert producer.sent[0] == SETTINGS.ledger_topic
    assert consumer.commits == [{part.tp: 50}]
    assert part.state is not None and part.state.ledger.ledger_end == 50  # 50 entries from 0


def test_a_ledger_that_was_not_written_fails_the_batch_before_its_offset_is_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_partition, "publisher", Publisher())
    part, producer, consumer = batch_of(ledger_fails=True)
    with pytest.raises(RuntimeError, match="ledger"):
        asyncio.run(part._batch(fifty()))
    assert SETTINGS.ledger_topic in producer.sent
    assert consumer.commits == []
