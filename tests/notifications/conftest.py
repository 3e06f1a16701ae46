"""Fixtures of the notification and polling tests: a local ElasticMQ (the project's own runner)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.gateway.pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def upstream(pki: Any) -> Iterator[Any]:
    """The gateway tests' sandbox upstream, with listings and payment methods that change."""
    from tests.gateway.harness import SELLER, SELLER_ID
    from tests.gateway.sandbox import fixture_files, load_definitions
    from tests.notifications.upstream import StatefulSandbox

    sandbox = StatefulSandbox(load_definitions(fixture_files()), SELLER, seller_id=SELLER_ID).start(
        pki.server_context(), free_port()
    )
    try:
        yield sandbox
    finally:
        sandbox.stop()
