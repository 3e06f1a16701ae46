"""Shared fixtures: the real local Kafka broker (started by the project's own runner)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.common import KAFKA_SH


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Start (or reuse) the single-node KRaft broker with the packaged runner (partnerwatch/kafka_runner)."""
    subprocess.run(["bash", str(KAFKA_SH), "start"], check=True)
    yield "127.0.0.1:9092"


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
