"""Shared fixtures: the real local Kafka broker (started by the project's own runner)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.common import KAFKA_SH
from partnerwatch.local_worker import CREATED, delete_namespace_topics
from pipeline.config import Settings
from sinks.kafka_io import KafkaAccessError
from tests.kafka_cleanup import SHARED


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Start (or reuse) the single-node KRaft broker with the packaged runner (partnerwatch/kafka_runner),
    on the port of PW_KAFKA_BROKER (the address the tests' clients and workers use)."""
    broker = Settings.from_env().kafka_broker
    subprocess.run(
        ["bash", str(KAFKA_SH), "start"], check=True, env={**os.environ, "PW_KAFKA_BROKER": broker}
    )
    yield broker


@pytest.fixture(scope="module", autouse=True)
def _delete_module_topics(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the topics of the namespaces this module made (tests/kafka_cleanup.py says why).
    Autouse at module scope: set up before, and torn down after, the module's own workers."""
    first = len(CREATED)
    yield
    made = [n for n in CREATED[first:] if n not in SHARED]
    if made and "kafka_broker" in request.session.stash.get(_FIXTURES_USED, set()):
        _delete(made)


@pytest.fixture(scope="session", autouse=True)
def _delete_shared_topics(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if SHARED and "kafka_broker" in request.session.stash.get(_FIXTURES_USED, set()):
        _delete(sorted(SHARED))


def _delete(names: list[str]) -> None:
    # the broker went away (a fault test stopped it): nothing to tidy
    with contextlib.suppress(KafkaAccessError):
        delete_namespace_topics(Settings.from_env(), names)


_FIXTURES_USED = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> None:
    if fixturedef.argname == "kafka_broker":
        request.session.stash.setdefault(_FIXTURES_USED, set()).add("kafka_broker")


#: the markers of tests that share the broker (and the ClickHouse server), or stop a server; the
#: `reliability` fault tests carry `integration` too, its fuzz of the validator alone does not
_SERIAL_MARKERS = ("integration", "server")


def uses_broker(item: pytest.Item) -> bool:
    """Whether the test runs with the broker's tests (tools/split_tests.py): it is marked so, or it
    uses the broker. At most two of their modules run at once (one while the other tests run)."""
    return "kafka_broker" in getattr(item, "fixturenames", ()) or any(
        item.get_closest_marker(name) for name in _SERIAL_MARKERS
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `-m broker` sees these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `broker` every test that uses the broker: `make test` (tools/split_tests.py) runs
    them in processes of their own, and the others beside them in another."""
    for item in items:
        if uses_broker(item):
            item.add_marker(pytest.mark.broker)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a stale optional mypyc build (tools/compile_detectors.py): its `.so` files
    would run in place of the edited `.py` files."""
    from tools.compile_detectors import stale

    old = stale()
    if old:
        raise pytest.UsageError(
            "the compiled detectors are older than their sources ("
            + ", ".join(old[:5])
            + (", ..." if len(old) > 5 else "")
            + "): run `make compile` to rebuild them or `make clean-compiled` to test pure Python"
        )
