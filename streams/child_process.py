"""A child process the worker runs, watches and stops: the provider stage
(streams/provider_stage_child.py, `PW_PROVIDER_STAGE=process`) and the warehouse loader
(streams/loader_child.py, `PW_WAREHOUSE_LOADER=process`).

- The child gets the worker's environment (its settings come from the same `PW_*` variables and
  `.env`), `--parent-pid` (it stops when the worker is gone, SIGKILL included) and `--metrics-fd`:
  a socket the worker bound on a free loopback port and listens on, inherited by the child, which
  serves its /metrics (and the loader its /v1/health) on it. The worker binds before the child
  starts and keeps its copy until the child has exited, so no other process can take the port
  meanwhile (a port number handed over to be bound later could be taken by any local user, who
  would then keep the child from starting, or answer the worker's scrapes and health checks in
  its place). So, from the child's start until it serves (its imports, about a second), a scrape
  or health check waits up to `SCRAPE_SECONDS` for an answer instead of being refused; the
  children serve before they reach for Kafka or the warehouse. Its output goes where the
  worker's goes.
- When it exits while the worker runs, it is started again after 1 s, doubling up to 30 s (back
  to 1 s once a child has run for a minute); a counter of the worker counts the restarts and
  /v1/health says `restarting`, with the exit code, until the next one runs.
- The worker's /metrics shows the child's own figures (the families it names) read from the
  child at each scrape, in place of the worker's (which stay at zero in this mode). The worker
  asks for those families only (`?name[]=...`), so it parses a few of them, not the child's
  whole registry.
- Stopping the worker stops the child with SIGTERM, SIGKILL after `STOP_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from socketserver import ThreadingMixIn
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import aiohttp
import structlog
from prometheus_client import generate_latest, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY, Collector

from pipeline.config import Settings
from sinks import metrics

log = structlog.get_logger(__name__)

T = TypeVar("T")

RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
#: a child that ran this long before exiting restarts after RESTART_MIN_SECONDS again
STEADY_SECONDS = 60.0
#: the stage's own stop waits up to 30 s for its thread (the last checkpoint)
STOP_SECONDS = 40.0
#: how long a scrape of the worker waits for the child's /metrics
SCRAPE_SECONDS = 2.0
#: how long the child's metrics server waits for a request's bytes before it drops the connection
REQUEST_SECONDS = 5.0


def _listener() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 and listening, for a child to inherit."""
    return socket.create_server(("127.0.0.1", 0), backlog=16)


def inherited_listener(fd: int) -> socket.socket:
    """In a child: the listening socket the worker passed as `--metrics-fd` (refused, with a clear
    error, when that descriptor is no listening TCP socket on 127.0.0.1)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"--metrics-fd {fd} is not an open socket: {exc}") from exc
    host = sock.getsockname()[0] if sock.family == socket.AF_INET else None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or host != "127.0.0.1" or not listening:
        sock.detach()
        raise ValueError(f"--metrics-fd {fd} is not a listening TCP socket on 127.0.0.1")
    sock.set_inheritable(False)  # the child's own children do not get it
    return sock


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_SECONDS  # a client that sends nothing does not hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket) -> None:
        address = sock.getsockname()
        super().__init__(address, _QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # bound and listening already (the worker's)
        self.server_name, self.server_port = address[0], address[1]
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went quiet (`REQUEST_SECONDS`) or away is dropped without a traceback
        in the log (any local process can connect); anything else is reported as the base does."""
        if isinstance(sys.exc_info()[1], TimeoutError | ConnectionError):
            return
        super().handle_error(request, client_address)


def serve_metrics(sock: socket.socket) -> None:
    """In a child: serve the registry's /metrics on `sock` (`inherited_listener`), from a daemon
    thread, as `prometheus_client.start_http_server` does on a port of its own binding."""
    server = _MetricsServer(sock)
    server.set_app(make_wsgi_app())
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def parent_gone(parent_pid: int) -> bool:
    """In a child: the worker that started it (`--parent-pid`; 0: none) is no longer its parent
    (it ended, SIGKILL included)."""
    return bool(parent_pid) and os.getppid() != parent_pid


def unless_parent_gone(
    parent_pid: int, stopping: Callable[[], bool], name: str, work: Callable[[], T]
) -> T | None:
    """In a child, before its own loop runs: `work()` on a daemon thread of its own, or None as
    soon as the worker is gone (`parent_gone`) or `stopping()` (a signal); that thread is then
    left to end with the process. `work`'s exception is raised here. (A child that waited in
    `ensure_topics` for an unreachable broker outlived a killed worker by its 30 s of retries.)"""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(PARENT_POLL_SECONDS)
        if thread.is_alive() and (stopping() or parent_gone(parent_pid)):
            return None
    if errors:
        raise errors[0]
    return box[0]


#: How often a child waiting on `unless_parent_gone` looks for its worker.
PARENT_POLL_SECONDS = 0.2


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _families(shown: Sequence[Any]) -> frozenset[str]:
    return frozenset(family.name for m in shown for family in m.describe())


#: The sample names of a family besides its own name, by type (as prometheus_client's registry
#: names them, for a `name[]` query).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def sample_names(shown: Sequence[Any]) -> tuple[str, ...]:
    """Every sample name of the families of `shown`: a `/metrics?name[]=...` query for them
    answers with those families only (prometheus_client's exposition restricts its registry to
    the sample names asked for)."""
    names: list[str] = []
    for m in shown:
        for family in m.describe():
            names.append(family.name)
            names.extend(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return tuple(dict.fromkeys(names))


def asked_samples(query: Any) -> list[str]:
    """The sample names a `/metrics?name[]=...` query asks for (blank ones dropped, as `parse_qs`
    drops them); none: the whole registry."""
    return [name for name in query.getall("name[]", []) if name]


def exposition(names: Sequence[str]) -> bytes:
    """The registry's text exposition, of the samples `names` only when any are given, as
    prometheus_client's own exposition answers a `name[]` query."""
    return generate_latest(REGISTRY.restricted_registry(names) if names else REGISTRY)


class ChildMetrics(Collector):
    """The child's families (`shown`) as it last reported them (`ChildProcess.scrape`)."""

    def __init__(self, shown: Sequence[Any] = metrics.STAGE_METRICS) -> None:
        self.text = ""
        self.shown = tuple(shown)
        self.names = _families(self.shown)
        #: the scrape's query: the child answers with these families only, not its whole
        #: registry (its process, collector and client figures), which the worker would parse
        #: at every scrape of its own only to drop them
        self.query = tuple(("name[]", name) for name in sample_names(self.shown))
        #: those sample names: a scrape of the worker that asks for none of them (`name[]`)
        #: does not read the child
        self.samples = frozenset(name for _, name in self.query)

    def describe(self) -> Iterator[Metric]:
        """The shown families, by which the registry knows this collector's names (a
        `?name[]=` scrape of the worker collects it only when it asks for one of them; with
        no `describe`, the registry would read `collect` once, before the child has answered)."""
        for metric in self.shown:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(text_string_to_metric_families(self.text))
        except ValueError:  # a half-written answer: nothing rather than a broken scrape
            return
        for family in families:
            if family.name in self.names:
                yield family


#: The collector each kind of child (`ChildProcess.name`) shows its figures by in the worker's
#: registry: a new instance's takes its place (it describes the same families).
_SHOWING: dict[str, ChildMetrics] = {}


class ChildProcess:
    """One child at a time, restarted when it exits. Subclasses say what it runs (`command`),
    what it is called (`name`: logs; `label`: health), which of its figures the worker's /metrics
    shows (`SHOWN`) and which counter counts its restarts (`RESTARTS`)."""

    name = "child"
    label = "the child process"
    SHOWN: Sequence[Any] = ()
    RESTARTS: Any = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        #: the child's listening socket (the worker's copy), held until the child has exited
        self._listening: socket.socket | None = None
        self.status = "starting"
        self.restarts = 0
        #: why the last child ended ("" while none has ended on its own)
        self.last_exit = ""
        self.collector = ChildMetrics(self.SHOWN)
        self._started_at = 0.0
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None

    def command(self) -> list[str]:
        """`python -m partnerwatch <command> --metrics-fd F --parent-pid N` and `arguments()`."""
        if self._listening is None:
            raise RuntimeError("a child's command is built once its listening socket is (_spawn)")
        return [
            sys.executable,
            "-m",
            "partnerwatch",
            *self.arguments(),
            "--metrics-fd",
            str(self._listening.fileno()),
            "--parent-pid",
            str(os.getpid()),
        ]

    def arguments(self) -> list[str]:
        raise NotImplementedError

    async def start(self) -> None:
        """Start the child; the worker's /metrics shows its figures from now on."""
        if self._session is None:  # first start: the worker's own figures of the child make way
            for metric in self.SHOWN:
                with contextlib.suppress(KeyError):
                    REGISTRY.unregister(metric)
            # and so does an earlier child of the same name's (its collector holds the names)
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(_SHOWING.pop(self.name))
            REGISTRY.register(self.collector)
            _SHOWING[self.name] = self.collector
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SCRAPE_SECONDS)
            )
        await self._spawn()

    async def _spawn(self) -> None:
        self._release()
        self.collector.text = ""
        self.prepare()
        listening = self._listening = _listener()
        self.port = int(listening.getsockname()[1])
        env = {**os.environ, "PW_LOG_LEVEL": self.settings.log_level}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(listening.fileno(),),
            )
        except BaseException:
            self._release()
            raise
        self._started_at = time.monotonic()
        self.status = "running"
        log.info(f"{self.name}.process_started", pid=self.proc.pid)

    def prepare(self) -> None:
        """Before each child starts (a subclass's folder, its last answers forgotten)."""

    def _release(self) -> None:
        """Close the worker's copy of the last child's listening socket (the child has exited)."""
        if self._listening is not None:
            self._listening.close()
            self._listening = None

    async def supervise(self) -> None:
        """Until `stop`: wait for the child to exit, and start another."""
        delay = RESTART_MIN_SECONDS
        while not self._stopping:
            proc = self.proc
            if proc is None:
                return
            code = await proc.wait()
            self._release()
            if self._stopping:
                return
            ran = time.monotonic() - self._started_at
            how = f"was ended by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            self.last_exit = f"{self.label} {how} after {ran:.0f} s"
            self.status = "restarting"
            self.collector.text = ""
            if ran >= STEADY_SECONDS:
                delay = RESTART_MIN_SECONDS
            log.error(f"{self.name}.process_exited", code=code, restart_in=delay)
            while True:  # until a child starts (e.g. out of processes: try again, later)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)
                if self._stopping:
                    return
                try:
                    await self._spawn()
                    if self._stopping and self.proc is not None:  # `stop` came meanwhile
                        with contextlib.suppress(ProcessLookupError):
                            self.proc.send_signal(signal.SIGTERM)
                    break
                except OSError as exc:
                    self.last_exit = f"{self.label} could not start: {exc}"[:500]
                    log.error(f"{self.name}.process_start_failed", error=str(exc))
            self.restarts += 1
            if self.RESTARTS is not None:
                self.RESTARTS.inc()

    async def scrape(self, names: Collection[str] = ()) -> None:
        """Read the child's /metrics for the worker's next scrape (kept as it was on failure);
        `names`: the sample names that scrape asks for (`?name[]=`; none: all), so the child is
        not read when none of them are its own."""
        if self._session is None or self.status != "running":
            return
        if names and self.collector.samples.isdisjoint(names):
            return
        try:
            async with self._session.get(
                f"http://127.0.0.1:{self.port}/metrics", params=self.collector.query
            ) as response:
                if response.status == 200:
                    self.collector.text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            pass  # starting, or gone: the supervisor says which

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL after STOP_SECONDS; no restart after this."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_SECONDS)
            except TimeoutError:
                log.error(f"{self.name}.process_kill", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._release()
        self.status = "stopped"
        if self._session is not None:
            await self._session.close()

    def health(self) -> dict[str, Any]:
        """For /v1/health: running, restarting (with why) or stopped."""
        running = self.status == "running"
        return {
            "status": self.status,
            "error": "" if running or self.status == "starting" else self.last_exit,
            "mode": "process",
            "pid": self.proc.pid if self.proc is not None and running else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }
