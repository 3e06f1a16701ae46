"""`PW_PROVIDER_STAGE=process`: the worker runs the provider stage as a child process.

The same stage as `PW_PROVIDER_STAGE=worker` (streams/provider_stage.py), run by `partnerwatch
provider-stage` in a process the worker starts, watches and stops, so that one command still runs
the whole job while the stage's folding no longer takes turns with the ingest service for the
worker's interpreter lock (docs/performance.md, "The provider stage as a child process").

- The child gets the worker's environment (its settings come from the same `PW_*` variables and
  `.env`), `--parent-pid` (it stops when the worker is gone, SIGKILL included) and a loopback
  `--metrics-port`; its output goes where the worker's goes.
- When it exits while the worker runs, it is started again after 1 s, doubling up to 30 s (back
  to 1 s once a child has run for a minute); `pw_provider_stage_process_restarts_total` counts
  the restarts and /v1/health says `restarting`, with the exit code, until the next one runs.
  The stage resumes from its last checkpoint, as after a crash of a worker in `worker` mode.
- The worker's /metrics shows the stage's own figures (`STAGE_METRICS` in sinks/metrics.py) read
  from the child at each scrape, in place of the worker's (which stay at zero in this mode).
- Stopping the worker stops the child with SIGTERM (it checkpoints and exits), SIGKILL after
  `STOP_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY, Collector

from pipeline.config import Settings
from sinks import metrics

log = structlog.get_logger(__name__)

RESTART_MIN_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
#: a child that ran this long before exiting restarts after RESTART_MIN_SECONDS again
STEADY_SECONDS = 60.0
#: the stage's own stop waits up to 30 s for its thread (the last checkpoint)
STOP_SECONDS = 40.0
#: how long a scrape of the worker waits for the child's /metrics
SCRAPE_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _families() -> frozenset[str]:
    return frozenset(family.name for m in metrics.STAGE_METRICS for family in m.describe())


class ChildMetrics(Collector):
    """The stage's families as the child last reported them (`StageProcess.scrape`)."""

    def __init__(self) -> None:
        self.text = ""
        self.names = _families()

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(text_string_to_metric_families(self.text))
        except ValueError:  # a half-written answer: nothing rather than a broken scrape
            return
        for family in families:
            if family.name in self.names:
                yield family


class StageProcess:
    """One `partnerwatch provider-stage` child at a time, restarted when it exits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.status = "starting"
        self.restarts = 0
        #: why the last child ended ("" while none has ended on its own)
        self.last_exit = ""
        self.collector = ChildMetrics()
        self._started_at = 0.0
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "partnerwatch",
            "provider-stage",
            "--metrics-port",
            str(self.port),
            "--parent-pid",
            str(os.getpid()),
        ]

    async def start(self) -> None:
        """Start the child; the worker's /metrics shows its stage figures from now on."""
        if self._session is None:  # first start: the worker's own stage figures make way
            for metric in metrics.STAGE_METRICS:
                with contextlib.suppress(KeyError):
                    REGISTRY.unregister(metric)
            REGISTRY.register(self.collector)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SCRAPE_SECONDS)
            )
        await self._spawn()

    async def _spawn(self) -> None:
        self.port = _free_port()
        self.collector.text = ""
        env = {**os.environ, "PW_LOG_LEVEL": self.settings.log_level}
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(), env=env, stdin=asyncio.subprocess.DEVNULL
        )
        self._started_at = time.monotonic()
        self.status = "running"
        log.info("provider_stage.process_started", pid=self.proc.pid)

    async def supervise(self) -> None:
        """Until `stop`: wait for the child to exit, and start another."""
        delay = RESTART_MIN_SECONDS
        while not self._stopping:
            proc = self.proc
            if proc is None:
                return
            code = await proc.wait()
            if self._stopping:
                return
            ran = time.monotonic() - self._started_at
            how = f"was ended by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            self.last_exit = f"the provider stage process {how} after {ran:.0f} s"
            self.status = "restarting"
            self.collector.text = ""
            if ran >= STEADY_SECONDS:
                delay = RESTART_MIN_SECONDS
            log.error("provider_stage.process_exited", code=code, restart_in=delay)
            while True:  # until a child starts (e.g. out of processes: try again, later)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_SECONDS)
                if self._stopping:
                    return
                try:
                    await self._spawn()
                    break
                except OSError as exc:
                    self.last_exit = f"the provider stage process could not start: {exc}"[:500]
                    log.error("provider_stage.process_start_failed", error=str(exc))
            self.restarts += 1
            metrics.PROVIDER_PROCESS_RESTARTS.inc()

    async def scrape(self) -> None:
        """Read the child's /metrics for the worker's next scrape (kept as it was on failure)."""
        if self._session is None or self.status != "running":
            return
        try:
            async with self._session.get(f"http://127.0.0.1:{self.port}/metrics") as response:
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
                log.error("provider_stage.process_kill", pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
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
