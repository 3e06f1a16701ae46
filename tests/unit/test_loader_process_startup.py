"""`partnerwatch loader` as the worker's child (streams/loader_process.py): a worker that dies
while the child is still starting (making the topics, which waits out a broker that is down, or
opening the warehouse) is not outlived. The child stops there: it does not open the embedded
warehouse (which locks its folder to one process), or closes it at once, and starts neither the
loader nor the socket's server. No broker, no engine: both steps are stand-ins here. (The whole
worker with its loader process: tests/integration/test_loader_child.py.)"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from streams import loader_process
from streams.loader_process import LoaderProcess

PARENT = 4242  # the worker's pid the child was given (`--parent-pid`)


class Events:
    """What the stand-ins saw, and the switch that says the worker is gone."""

    def __init__(self) -> None:
        self.gone = threading.Event()
        self.release = threading.Event()  # ends a step that blocks (the broker down)
        self.seen: list[str] = []


class FakeWarehouse:
    def __init__(self, events: Events) -> None:
        self.events = events

    def close(self) -> None:
        self.events.seen.append("warehouse closed")


@pytest.fixture()
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Events]:
    events = Events()
    monkeypatch.setattr(loader_process, "parent_gone", lambda pid: events.gone.is_set())
    monkeypatch.setattr(loader_process, "WATCH_SECONDS", 0.05, raising=False)

    class Loader:
        def __init__(self, settings: Settings) -> None:
            events.seen.append("warehouse opened")
            self.warehouse = FakeWarehouse(events)
            self.crash_error = ""
            if events.seen[0] == "gone while opening":
                events.gone.set()
                time.sleep(0.3)  # the engine migrating, the worker gone meanwhile

        def start(self) -> None:
            events.seen.append("loader started")

        def alive(self) -> bool:
            return True

        def stop(self, timeout: float = 30.0) -> None:
            events.seen.append("loader stopped")

    def server(warehouse: Any, path: Path) -> Any:
        events.seen.append("socket served")
        raise OSError("not in this test")

    monkeypatch.setattr(loader_process, "WarehouseLoader", Loader)
    monkeypatch.setattr(loader_process, "WarehouseServer", server)
    try:
        yield events
    finally:
        events.release.set()


def _run(tmp_path: Path) -> tuple[int, float]:
    """The child's `run` as `partnerwatch loader --socket ... --parent-pid ... --metrics-fd`
    does it; its exit code and how long it took."""
    listening = socket.create_server(("127.0.0.1", 0))
    settings = Settings.from_env({"PW_MALLOC_TRIM_SECONDS": "0"})
    child = LoaderProcess(settings, tmp_path / "w.sock", PARENT, listening)
    started = time.monotonic()
    try:
        code = asyncio.run(child.run())
    finally:
        listening.close()
    return code, time.monotonic() - started


def test_a_worker_gone_while_the_topics_are_made_ends_the_child_there(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def ensure_topics(settings: Settings) -> list[str]:
        events.seen.append("topics")
        events.gone.set()  # the worker dies (SIGKILL) while the broker does not answer
        events.release.wait(5.0)  # `ensure_topics` retries for up to 30 s
        return []

    monkeypatch.setattr(loader_process, "ensure_topics", ensure_topics)
    code, took = _run(tmp_path)
    assert code == 0
    assert took < 2.5, f"the child outlived its worker by {took:.1f} s"
    assert events.seen == ["topics"]  # no warehouse opened (its folder stays free), no loader


def test_a_worker_gone_while_the_warehouse_opens_leaves_it_closed_and_unserved(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loader_process, "ensure_topics", lambda settings: [])
    events.seen.append("gone while opening")
    code, took = _run(tmp_path)
    assert code == 0 and took < 5.0
    assert events.seen == ["gone while opening", "warehouse opened", "warehouse closed"]


def test_a_worker_gone_already_makes_no_topics(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loader_process, "ensure_topics", lambda s: events.seen.append("topics"))
    events.gone.set()
    code, _ = _run(tmp_path)
    assert code == 0 and events.seen == []


def test_a_worker_that_stays_gets_its_loader_and_socket(
    events: Events, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The stand-ins themselves: with the worker there, the child goes on to start the loader
    and serve the socket (a failure to serve ends it with code 1, the loader stopped)."""
    monkeypatch.setattr(loader_process, "ensure_topics", lambda settings: [])
    code, _ = _run(tmp_path)
    assert code == 1
    assert events.seen == [
        "warehouse opened",
        "loader started",
        "socket served",
        "loader stopped",
        "warehouse closed",
    ]
