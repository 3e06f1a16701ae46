"""The real worker's log (`partnerwatch worker` on the local broker, in a namespace of its own):
our lines and Faust's, each once, at its own level, with one timestamp, in both PW_LOG_FORMATs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker

pytestmark = pytest.mark.integration

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
CONSOLE = re.compile(r"^\S+Z \[(\w+)\s*\] (.*)$")


def worker_log(tmp_path: Path, fmt: str) -> str:
    ns = Namespace(tmp_path, extra_env={"PW_LOG_FORMAT": fmt})
    worker = Worker(ns).start()
    worker.stop()
    return worker.log_path.read_text(errors="replace")


def parse(log: str, fmt: str) -> list[dict[str, Any]]:
    out = []
    for line in log.splitlines():
        if line[:1] in ("+", "|"):
            continue  # Faust's start-up banner, printed on stdout (not a log line)
        if fmt == "json":
            doc = orjson.loads(line)  # anything else must be one JSON record
            out.append({"event": doc["event"], "level": doc["level"], "line": line})
        elif match := CONSOLE.match(line):
            out.append({"event": match[2], "level": match[1], "line": line})
    return out


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_worker_logs_each_line_once_at_its_level(
    kafka_broker: str, tmp_path: Path, fmt: str
) -> None:
    log = worker_log(tmp_path, fmt)
    found = parse(log, fmt)
    assert found, log[-2000:]
    # structlog lines of ours, logged at info while the worker starts
    for event in ("behaviour_model", "digest.periodic_off", "warehouse.loader_started"):
        mine = [r for r in found if r["event"].split()[0] == event]
        assert [r["level"] for r in mine] == ["info"], (event, mine)
    # Faust's and aiokafka's own records: the same handler and format
    ready = [r for r in found if "Worker ready" in r["event"]]
    assert [r["level"] for r in ready] == ["info"], ready
    assert any(r["event"].startswith("Joined group") for r in found)
    # one timestamp per line, and Faust's "[date] [pid] [LEVEL]" wrapping is gone
    assert all(len(TIMESTAMP.findall(r["line"])) == 1 for r in found)
    assert not re.search(r"\] \[\d+\] \[[A-Z]+\]", log)
    assert not [
        r for r in found if r["level"] not in ("debug", "info", "warning", "error", "critical")
    ]
