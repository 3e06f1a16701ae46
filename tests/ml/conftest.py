"""A small benign history, its trained behaviour model, and a spy standing in for a model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectors.behaviour.features import FEATURES, KINDS, MONOTONE
from detectors.behaviour.model import BehaviourModel, load
from detectors.behaviour.training import train_and_save
from pipeline.event import Event, normalize
from pipeline.simulation.traffic import generate

HISTORY_EVENTS = 24_000  # a little over a day at 1,800 events an hour: ~500 principal-hours
DAY_HISTORY_EVENTS = 100_000  # five days or so: enough closed days for a day forest


def benign(count: int, seed: int = 5) -> list[Event]:
    return [
        normalize(e) for e, _ in generate(count, seed=seed, attack_kinds=(), events_per_hour=1800)
    ]


@pytest.fixture(scope="session")
def history() -> list[Event]:
    return benign(HISTORY_EVENTS)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, history: list[Event]) -> Path:
    """A models directory holding one artifact trained on `history`."""
    path = tmp_path_factory.mktemp("models")
    train_and_save(iter(history), path, random_state=3, trees=100)
    return path


@pytest.fixture(scope="session")
def model(models_dir: Path) -> BehaviourModel:
    return load(next(p for p in models_dir.iterdir() if p.name.startswith("behaviour-")))


@pytest.fixture(scope="session")
def day_history() -> list[Event]:
    return benign(DAY_HISTORY_EVENTS, seed=15)


@pytest.fixture(scope="session")
def day_models_dir(tmp_path_factory: pytest.TempPathFactory, day_history: list[Event]) -> Path:
    """A models directory holding one artifact with a day forest, trained on `day_history`."""
    path = tmp_path_factory.mktemp("day-models")
    _, trained = train_and_save(iter(day_history), path, random_state=3, trees=100)
    assert trained.meta["day"] is not None, trained.meta["day_note"]
    return path


@pytest.fixture(scope="session")
def day_model(day_models_dir: Path) -> BehaviourModel:
    return load(next(p for p in day_models_dir.iterdir() if p.name.startswith("behaviour-")))


class SpyForest:
    """Quacks like a day `Forest`: flags nothing, records every day vector it is asked to score."""

    threshold = float("inf")

    def __init__(self) -> None:
        self.scored: list[list[float]] = []

    def score(self, vectors: list[list[float]]) -> list[float]:
        self.scored.extend(list(v) for v in vectors)
        return [0.0] * len(vectors)

    def flags(self, vector: list[float], score: float) -> bool:
        return False


class SpyModel:
    """Quacks like `BehaviourModel`, flags nothing, and records every vector it is asked to score
    (with `days`, every day vector too, in `day.scored`)."""

    name = "spy"
    threshold = float("inf")

    def __init__(self, days: bool = False) -> None:
        #: None: no day forest, days are not scored
        self.day = SpyForest() if days else None
        self.early = {kind: tuple(float("inf") for _ in MONOTONE) for kind in KINDS}
        self.meta: dict[str, Any] = {
            "baseline": {kind: {f: {"mean": 0.0, "std": 1.0} for f in FEATURES} for kind in KINDS}
        }
        self.scored: list[list[float]] = []

    def score(self, vectors: list[list[float]]) -> list[float]:
        self.scored.extend(list(v) for v in vectors)
        return [0.0] * len(vectors)

    def out_of_range(self, vector: list[float]) -> list[str]:
        return []

    def flags(self, vector: list[float], score: float) -> bool:
        return False


@pytest.fixture()
def spy() -> Iterator[SpyModel]:
    yield SpyModel()
