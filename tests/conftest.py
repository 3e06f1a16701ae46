"""Shared fixtures: the real local Kafka broker (started by the project's own runner)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.common import KAFKA_SH
from pipeline.config import Settings


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Start (or reuse) the single-node KRaft broker with the packaged runner (partnerwatch/kafka_runner),
    on the port of PW_KAFKA_BROKER (the address the tests' clients and workers use)."""
    broker = Settings.from_env().kafka_broker
    subprocess.run(
        ["bash", str(KAFKA_SH), "start"], check=True, env={**os.environ, "PW_KAFKA_BROKER": broker}
    )
    yield broker


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path
