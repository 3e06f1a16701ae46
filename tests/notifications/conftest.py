"""Fixtures of the notification and polling tests: a local ElasticMQ (the project's own runner)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from partnerwatch.common import ELASTICMQ_SH
from partnerwatch.local_worker import free_port


@pytest.fixture(scope="session")
def elasticmq() -> Iterator[str]:
    """ElasticMQ on 127.0.0.1 and a port of its own, started by the packaged runner, stopped after."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "PW_SQS_ENDPOINT_URL": endpoint}
    subprocess.run(["bash", str(ELASTICMQ_SH), "start"], check=True, env=env)
    try:
        yield endpoint
    finally:
        subprocess.run(["bash", str(ELASTICMQ_SH), "stop"], check=False, env=env)
