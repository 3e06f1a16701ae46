"""Where states are dropped or replaced, the sweeps' floors (pipeline/floors.py) let go of the
dicts they hold: a partition revoked, a partition's state (re)loaded, accounts repaired from the
ledger, a retro hunt's replay done. Each test holds a floor for a dict of its own first and checks
that it is gone afterwards (each fails when the `floors.clear_all()` call is taken out)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from detectors import rates, retro_hunt
from pipeline.alert import _OPEN, keep_open
from pipeline.config import Settings
from pipeline.event import parse_action
from pipeline.simulation.traffic import generate
from streams import ingest_partition, state_repair
from streams.ingest import IngestService
from streams.ingest_batch import PartitionState

SETTINGS = Settings.from_env({"PW_PROCESSING_GUARANTEE": "at_least_once"})


def held() -> tuple[dict[str, str], dict[str, Any]]:
    """An open-alerts dict and a rate records dict, each with a floor held."""
    opened: dict[str, str] = {}
    keep_open(opened, "a", "2026-11-10T00:00:00.000Z")
    _OPEN.below(opened, "2026-11-01T00:00:00.000Z")  # a walk puts the floor
    records: dict[str, Any] = {"p": {"h": 100}}
    rates.forget_idle(records, 10, 100)
    assert _OPEN.floor(opened) is not None and rates._IDLE.floor(records) is not None
    return opened, records


def released(opened: dict[str, str], records: dict[str, Any]) -> bool:
    return _OPEN.floor(opened) is None and rates._IDLE.floor(records) is None


def test_a_revoke_lets_go_of_the_floors() -> None:
    closed: list[int] = []

    class Part:
        def __init__(self, partition: int) -> None:
            self.tp = TopicPartition(SETTINGS.actions_topic, partition)

        async def close(self) -> None:
            closed.append(self.tp.partition)

    service = SimpleNamespace(partitions={0: Part(0), 1: Part(1)})
    opened, records = held()
    # a revoke of partitions this worker does not hold changes nothing
    asyncio.run(IngestService.revoke(service, [TopicPartition(SETTINGS.actions_topic, 5)]))  # type: ignore[arg-type]
    assert not released(opened, records)
    asyncio.run(IngestService.revoke(service, [TopicPartition(SETTINGS.actions_topic, 1)]))  # type: ignore[arg-type]
    assert closed == [1] and list(service.partitions) == [0]
    assert released(opened, records)


def test_a_load_lets_go_of_the_floors_before_it_reads_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []

    class Stop(Exception):
        pass

    async def load_state(*args: Any) -> Any:
        seen.append(released(opened, records))
        raise Stop

    async def loaded_model() -> None:
        return None

    monkeypatch.setattr(ingest_partition, "load_state", load_state)
    service = SimpleNamespace(settings=SETTINGS, shared_producer=None, loaded_model=loaded_model)
    part = ingest_partition.PartitionIngest(service, TopicPartition(SETTINGS.actions_topic, 0))  # type: ignore[arg-type]
    opened, records = held()
    with pytest.raises(Stop):
        asyncio.run(part._load())
    assert seen == [True]


def test_a_repair_lets_go_of_the_floors(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(*args: Any) -> AsyncIterator[Any]:
        return
        yield

    monkeypatch.setattr(state_repair, "read_partition", nothing)
    opened, records = held()
    repairs = asyncio.run(state_repair.repair(PartitionState(0, 1.0), []))
    assert repairs.accounts == {} and released(opened, records)


def test_a_replay_lets_go_of_the_floors() -> None:
    events = [parse_action(orjson.dumps(e)) for e, _ in generate(300, seed=3)]
    account = events[0]["account_id"]
    mine = [(n, e) for n, e in enumerate((e for e in events if e["account_id"] == account), 1)]
    opened, records = held()
    _, replayed = retro_hunt.replay(mine, "api_rate_exceeded", 0, 2**62, SETTINGS.detect)
    assert replayed == len(mine) > 0 and released(opened, records)
