"""Shared fixtures: the real local Kafka broker (started by the project's own runner)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Start (or reuse) the single-node KRaft broker from infra/kafka/kafka.sh."""
    script = REPO_ROOT / "infra" / "kafka" / "kafka.sh"
    subprocess.run(["bash", str(script), "start"], check=True)
    yield "127.0.0.1:9092"


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
