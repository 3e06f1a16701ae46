"""What bounds the ingest service's records in hand (streams/ingest_partition.py): records the
consumer delivers while a partition's state loads are not kept (the load ends with a seek that
moves the position anyway) and its fetching pauses; once loaded, fetching pauses at
MAX_PENDING pending records and resumes below half of that."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from pipeline.config import Settings
from streams import ingest_partition
from streams.ingest_batch import PartitionState

SETTINGS = Settings.from_env({"PW_PROCESSING_GUARANTEE": "at_least_once"})
TP = TopicPartition(SETTINGS.actions_topic, 0)


class Service:
    def __init__(self) -> None:
        self.settings = SETTINGS
        self.calls: list[str] = []
        self.consumer = SimpleNamespace(
            committed=self._committed, seek=lambda tp, position: self.calls.append("seek")
        )
        self.shared_producer = object()

    async def _committed(self, tp: TopicPartition) -> int:
        return 7

    async def loaded_model(self) -> Any:
        return None

    def running_consumer(self) -> Any:
        return self.consumer

    def pause(self, tp: TopicPartition) -> None:
        self.calls.append("pause")

    def resume(self, tp: TopicPartition) -> None:
        self.calls.append("resume")


def test_records_delivered_while_loading_are_not_kept(monkeypatch: Any) -> None:
    service = Service()
    part = ingest_partition.PartitionIngest(service, TP)  # type: ignore[arg-type]
    held: list[int] = []

    async def load_state(settings: Settings, partition: int, model: Any) -> Any:
        assert part.loading
        part.feed(list(range(3000)))  # the consumer delivers while the state loads
        part.feed(list(range(3000)))
        held.append(len(part.pending))
        return PartitionState(partition, 7), ingest_partition.SnapshotWriter()

    monkeypatch.setattr(ingest_partition, "load_state", load_state)
    asyncio.run(part._load())
    assert held == [0], "records delivered during the load were kept"
    assert service.calls == ["pause", "seek", "resume"]
    assert not part.loading and not part.paused and part.pending == []
    part.feed(list(range(10)))  # loaded: kept
    assert len(part.pending) == 10


def test_fetching_pauses_at_max_pending() -> None:
    service = Service()
    part = ingest_partition.PartitionIngest(service, TP)  # type: ignore[arg-type]
    part.feed(list(range(ingest_partition.MAX_PENDING - 1)))
    assert service.calls == []
    part.feed([0])
    assert service.calls == ["pause"] and part.paused
    assert ingest_partition.MAX_PENDING <= 2 * ingest_partition.MAX_BATCH
