"""Logging is configured once: every line once, at its own level, with one timestamp, as console or JSON.

A child process loads the settings as every command does (which configures logging), builds the
worker as Faust's `worker` command does (asking for stdout to be redirected into the log) and
runs Faust's first-start hook, where Faust sets up its own logging; no broker is contacted. Then
it logs through structlog and through a standard-library logger (as aiokafka and Faust do).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import REPO_ROOT

PROBE = """
import asyncio, logging
import structlog
from partnerwatch.common import load_settings

settings = load_settings()
from streams.app import Worker, app

worker = Worker(app, loglevel=settings.log_level, redirect_stdouts=True, quiet=True)
asyncio.run(worker.on_first_start())
log = structlog.get_logger("probe")
log.info("probe.info", n=1)
log.debug("probe.debug")
log.warning("probe.warning")
logging.getLogger("aiokafka.probe").info("probe.foreign %s", "info")
logging.getLogger("aiokafka.probe").debug("probe.foreign_debug")
token = settings.api_token
try:
    1 / 0
except ZeroDivisionError:
    log.exception("probe.failed")
print("plain stdout")
"""

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
CONSOLE = re.compile(r"^(\S+) \[(\w+)\s*\] (\S+)")


def run_probe(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update({"PW_DATA_DIR": str(tmp_path), "PW_API_TOKEN": "local-secret-token", **variables})
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def records(stderr: str, fmt: str) -> list[dict[str, Any]]:
    """The log records on stderr: event, level, and how many timestamps their first line holds."""
    out = []
    for line in stderr.splitlines():
        if fmt == "json":
            doc = orjson.loads(line)  # every line is one JSON object, tracebacks included
            out.append({**doc, "timestamps": len(TIMESTAMP.findall(line))})
        elif match := CONSOLE.match(line):
            out.append(
                {
                    "timestamp": match[1],
                    "level": match[2],
                    "event": match[3],
                    "timestamps": len(TIMESTAMP.findall(line)),
                    "line": line,
                }
            )
    return out


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_each_line_once_at_its_level_with_one_timestamp(tmp_path: Path, fmt: str) -> None:
    done = run_probe(tmp_path, PW_LOG_FORMAT=fmt, PW_LOG_LEVEL="INFO")
    found = records(done.stderr, fmt)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for record in found:
        by_event.setdefault(str(record["event"]).split()[0], []).append(record)

    assert [r["level"] for r in by_event["probe.info"]] == ["info"]
    assert [r["level"] for r in by_event["probe.warning"]] == ["warning"]
    assert [r["level"] for r in by_event["probe.foreign"]] == [
        "info"
    ]  # a stdlib logger, same handler
    assert [r["level"] for r in by_event["probe.failed"]] == ["error"]
    assert (
        "probe.debug" not in by_event and "probe.foreign_debug" not in by_event
    )  # below PW_LOG_LEVEL
    assert all(r["timestamps"] == 1 for r in found), found
    assert all(
        TIMESTAMP.match(str(r["timestamp"])) and str(r["timestamp"]).endswith("Z") for r in found
    )
    # Faust's own format ("[2026-...] [pid] [WARNING] ...") never wraps a line
    assert not re.search(r"\] \[\d+\] \[[A-Z]+\]", done.stderr)
    # stdout is left alone: not re-logged
    assert done.stdout == "plain stdout\n" and "plain stdout" not in done.stderr
    # a traceback without local variables (they may hold secrets)
    assert "ZeroDivisionError" in done.stderr and "local-secret-token" not in done.stderr
    if fmt == "json":
        assert (
            by_event["probe.info"][0]["n"] == 1 and by_event["probe.info"][0]["logger"] == "probe"
        )
        assert by_event["probe.foreign"][0]["logger"] == "aiokafka.probe"
    else:
        assert "n=1" in by_event["probe.info"][0]["line"]


def test_the_level_filters_structlog_and_stdlib_alike(tmp_path: Path) -> None:
    done = run_probe(tmp_path, PW_LOG_FORMAT="json", PW_LOG_LEVEL="warning")
    events = [str(r["event"]).split()[0] for r in records(done.stderr, "json")]
    assert events == ["probe.warning", "probe.failed"]
