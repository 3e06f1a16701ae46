"""The alert feed as a child process, and alerts produced straight onto a namespace's topic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.local_worker import Namespace, free_port, wait_for
from pipeline.config import REPO_ROOT
from sinks.kafka_io import ensure_topics, producer


def produce_alerts(ns: Namespace, alerts: Iterable[dict[str, Any]]) -> int:
    """Publish alerts keyed by account (as the detect agent does), in order, acknowledged."""
    ensure_topics(ns.settings)
    prod = producer(ns.settings, role="test-alerts")
    sent = 0
    try:
        for alert in alerts:
            prod.send(
                ns.settings.alerts_topic,
                key=alert["account_id"].encode(),
                value=orjson.dumps(alert),
            )
            sent += 1
        prod.flush(30)
    finally:
        prod.close()
    return sent


def metric(port: int, name: str, labels: dict[str, str]) -> float:
    """A sample of the feed's /metrics (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{"):
                got = line[len(name) + 1 : line.index("}")]
                if ",".join(sorted(got.split(","))) == wanted:
                    return float(line.rsplit(" ", 1)[1])
    return 0.0


class Feed:
    """`partnerwatch alerts feed` for a namespace and a routes file."""

    def __init__(self, ns: Namespace, routes: Path, env: dict[str, str] | None = None) -> None:
        self.ns = ns
        self.metrics_port = free_port()
        self.env = {
            **ns.env,
            "PW_ALERT_ROUTES": str(routes),
            "PW_ALERT_FEED_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        self.log_path = ns.root / f"{ns.name}-feed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Feed:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partnerwatch", "alerts", "feed"],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, (
                f"feed exited: {self.log_tail()}"
            )
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
                ).close()
                return "alert_feed.assigned" in self.log_path.read_text(errors="replace")
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(ready, 60, "the alert feed to join its group", interval=0.2)
        return self

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.metrics_port, name, labels)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Another `partnerwatch` command with the feed's environment (e.g. `alerts redeliver`)."""
        return subprocess.run(
            [sys.executable, "-m", "partnerwatch", *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
