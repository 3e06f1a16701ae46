"""`partnerwatch provider-stage`, the provider-wide stage as a process of its own: it starts on
the broker, serves /metrics when asked, hands its freed heap memory back every
PW_MALLOC_TRIM_SECONDS as a worker does (streams/trim_thread.py), and SIGTERM ends it with exit
code 0. (What the stage computes is tested in-process: test_provider_stage.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from partnerwatch.local_worker import Namespace, free_port, wait_for
from pipeline.config import REPO_ROOT

pytestmark = pytest.mark.integration


def metric_value(port: int, name: str) -> float | None:
    """The metric's value, or None while the process does not answer or lacks it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_stage_process_trims_its_heap_and_stops_cleanly(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_MALLOC_TRIM_SECONDS": "0.3"})
    port = free_port()
    log = tmp_path / "stage.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "provider-stage", "--metrics-port", str(port)],
            env=ns.env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for(
                lambda: (
                    proc.poll() is None and (metric_value(port, "pw_heap_trims_total") or 0) >= 2
                ),
                90,
                "the stage process to trim its heap",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {log.read_text()[-2000:]}") from None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
