"""`partnerwatch loader`: the warehouse loader as a process of its own.

The same loader as the worker's thread (streams/warehouse_loader.py), with a small aiohttp server
on PW_LOADER_HOST:PW_LOADER_PORT (127.0.0.1:6067; `--metrics-port` puts it on 127.0.0.1 at that
port, and `--metrics-fd`, which a worker passes, serves it on a socket the worker bound and left
listening, streams/child_process.py): GET /v1/health (200 "ok", else 503 with the reason, as the
worker's) and GET /metrics (its `pw_warehouse_*` figures; `?name[]=` for some samples only). Nothing else is served over HTTP: no SQL, no tokens, so it needs
none.

Run it with a ClickHouse server (PW_CLICKHOUSE_URL) and the workers on PW_WAREHOUSE_LOADER=external.
With the embedded chDB warehouse it works only while no worker has that warehouse open (chDB locks
its folder to one process, even for reading): e.g. to load a ledger into a new warehouse. A worker
on PW_WAREHOUSE_LOADER=process runs it as its child with `--socket` (the warehouse served to the
worker on that Unix socket once it is open and migrated: sinks/warehouse_remote.py),
`--parent-pid` (it stops when the worker is gone) and `--metrics-fd`.
SIGTERM or SIGINT stops it after the batch in hand is stored and committed. Whether the worker is
gone is looked at every `WATCH_SECONDS` from the start: a worker that dies (or a signal that
comes) while the child makes the topics or opens the warehouse, which can take long (the broker
down), ends the child there: it stops waiting for the topics at once (the thread making them
ends with the process), or closes the warehouse once open,
and starts neither the loader nor the socket's server. Like the worker, it
hands its freed heap memory back every PW_MALLOC_TRIM_SECONDS (streams/trim_thread.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket as stdsocket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web
from kafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.config import Settings
from sinks.clickhouse import WarehouseError
from sinks.kafka_io import ensure_topics
from sinks.warehouse_remote import WarehouseServer
from streams import collector
from streams.child_process import asked_samples, exposition, parent_gone
from streams.trim_thread import TrimThread
from streams.warehouse_loader import WarehouseLoader
from streams.warehouse_service import loader_health

log = structlog.get_logger(__name__)

#: How often the process looks whether the worker that started it is gone (`--parent-pid`).
WATCH_SECONDS = 1.0

T = TypeVar("T")


async def unless_stopped(stop: asyncio.Event, name: str, work: Callable[[], T]) -> T | None:
    """`work()` on a daemon thread of its own, or None as soon as `stop` is set (a signal, or the
    worker gone): that thread is then left to finish, or to end with the process (a default
    executor's thread would hold the process's exit until it is done). Not begun if `stop` is
    set already."""
    if stop.is_set():
        return None
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T | None] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.done():  # given up on (`stop`)
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)

    def run() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = work()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    stopped = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {done, stopped}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not done.done():
        done.cancel()
        return None
    return done.result()


class LoaderProcess:
    def __init__(
        self,
        settings: Settings,
        socket: Path | None = None,
        parent_pid: int = 0,
        listening: stdsocket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.socket = socket
        self.parent_pid = parent_pid
        #: the listening socket the worker passed (`--metrics-fd`): served instead of binding
        self.listening = listening
        self.loader: WarehouseLoader | None = None
        self.server: WarehouseServer | None = None
        self.failure = ""

    def orphaned(self) -> bool:
        """The worker that started this is gone (SIGKILL included)."""
        return parent_gone(self.parent_pid)

    def stopped(self, stop: asyncio.Event) -> bool:
        """Whether to stop: `stop` is set (a signal), or is set now because the worker is gone."""
        if not stop.is_set() and self.orphaned():
            log.warning("loader.parent_gone", parent=self.parent_pid)
            stop.set()
        return stop.is_set()

    async def watch_parent(self, stop: asyncio.Event) -> None:
        """Set `stop` once the worker that started this is gone, from the start on."""
        while not self.stopped(stop):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=WATCH_SECONDS)

    async def health(self, request: web.Request) -> web.Response:
        status, body = loader_health(self.loader)
        if self.failure:
            status, body["status"], body["warehouse_error"] = "degraded", "degraded", self.failure
        body["warehouse_loader"] = "process" if self.parent_pid else "external"
        return web.json_response(body, status=200 if status == "ok" else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        # `?name[]=...` (the worker's scrape of its child, streams/child_process.py): those samples
        # only, as prometheus_client's own exposition answers that query
        return web.Response(
            body=exposition(asked_samples(request.query)),
            content_type=CONTENT_TYPE_LATEST.split(";")[0],
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(self.watch_parent(stop))
        try:
            return await self._run(stop)
        finally:
            watcher.cancel()

    async def _run(self, stop: asyncio.Event) -> int:
        s = self.settings
        loop = asyncio.get_running_loop()
        app = web.Application()
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        if self.listening is not None:  # the worker's, bound and listening: nothing to take
            host, port = self.listening.getsockname()[:2]
            await web.SockSite(runner, self.listening).start()
        else:
            host, port = s.loader_host, s.loader_port
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                await runner.cleanup()
                print(
                    f"cannot listen on {host}:{port} (PW_LOADER_HOST, PW_LOADER_PORT): {exc}",
                    file=sys.stderr,
                )
                return 2
        log.info("loader.listening", host=host, port=port)
        try:
            try:  # the pipeline's topics, once /v1/health answers ("starting" meanwhile)
                if not self.stopped(stop):
                    await unless_stopped(stop, "ensure-topics", lambda: ensure_topics(s))
            except KafkaError as exc:
                self.failure = f"cannot make the pipeline's topics: {type(exc).__name__}: {exc}"
                log.error("loader.topics_failed", error=self.failure)
                print(self.failure, file=sys.stderr)
                return 1
            if self.stopped(stop):  # the worker is gone, or a signal came: the warehouse stays shut
                log.info("loader.stopped_starting", step="topics")
                return 0
            try:  # opens and migrates the warehouse (blocking: off the event loop; not given up
                # on midway, the engine's folder in hand: closed at once below if stopped)
                self.loader = await loop.run_in_executor(None, WarehouseLoader, s)
            except WarehouseError as exc:
                self.failure = str(exc)
                log.error("loader.warehouse_unavailable", error=str(exc))
                print(f"warehouse unavailable: {exc}", file=sys.stderr)
                return 1
            if self.stopped(stop):  # no loader, no socket; the warehouse is closed below
                log.info("loader.stopped_starting", step="warehouse")
                return 0
            # The collector as in a worker (streams/collector.py): young collections every 10,000
            # allocations (each fetched record is a tracked object), the heap built so far (the
            # modules, the engine's objects) frozen out of every collection.
            collector.settle()
            # before the loader's thread: it fixes the mmap threshold before record batches come and go
            trim = TrimThread(
                s.malloc_trim_seconds, mmap_threshold_kib=s.malloc_mmap_threshold_kib
            ).start()
            self.loader.start()
            log.info("loader.started", backend=type(self.loader.warehouse).__name__)
            if self.socket is not None:
                try:  # the worker's queries: once the warehouse is open and migrated
                    self.server = WarehouseServer(self.loader.warehouse, self.socket).start()
                except (WarehouseError, OSError) as exc:
                    self.failure = f"cannot serve the warehouse on {self.socket}: {exc}"
                    log.error("loader.socket_failed", error=self.failure)
                    print(self.failure, file=sys.stderr)
                    await loop.run_in_executor(None, trim.stop)
                    await loop.run_in_executor(None, self.loader.stop)
                    return 1
                log.info("loader.serving", socket=str(self.socket))
            try:
                while not stop.is_set() and self.loader.alive():  # `watch_parent` sets `stop`
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
            finally:
                await loop.run_in_executor(None, trim.stop)
            if (
                not stop.is_set()
            ):  # the loader thread ended on its own (not an Exception): exit, be restarted
                log.error("loader.thread_ended", error=self.loader.crash_error)
                return 1
            log.info("loader.stopping")
            await loop.run_in_executor(None, self.loader.stop)
            return 0
        finally:
            # no query of the worker's is left running on a closed engine (the server waits up to
            # CLOSE_SECONDS for its connections' threads, the queries cancelled)
            if self.server is not None:
                await loop.run_in_executor(None, self.server.close)
            if self.loader is not None:
                self.loader.warehouse.close()
            await runner.cleanup()


def run(
    settings: Settings,
    socket: Path | None = None,
    parent_pid: int = 0,
    listening: stdsocket.socket | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or, with `parent_pid`, until that process is gone); the exit code
    (1: the topics could not be made, the warehouse could not be opened or served, or the loader
    died; 2: nowhere to listen).
    `listening`: a socket bound and listening already (the worker's, `--metrics-fd`), served in
    place of PW_LOADER_HOST:PW_LOADER_PORT."""
    if parent_gone(parent_pid):
        return 0  # the worker that started this is gone already
    return asyncio.run(LoaderProcess(settings, socket, parent_pid, listening).run())
