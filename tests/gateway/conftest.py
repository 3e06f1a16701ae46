"""Fixtures of the gateway tests: a certificate authority, the sandbox upstream, the seller's secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import free_port
from tests.gateway.harness import SELLER
from tests.gateway.pki import Pki, make_pki
from tests.gateway.sandbox import Sandbox, fixture_files, load_definitions


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def sandbox(pki: Pki) -> Iterator[Sandbox]:
    upstream = Sandbox(load_definitions(fixture_files()), SELLER).start(
        pki.server_context(), free_port()
    )
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture
def seller_secret(tmp_path: Path) -> Path:
    path = tmp_path / "seller-app.json"
    path.write_bytes(orjson.dumps(SELLER))
    path.chmod(0o600)
    return path
