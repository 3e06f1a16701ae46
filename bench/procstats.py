"""What the benchmark reads off running processes: a worker's /metrics, and CPU time and memory
from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _metrics_lines(port: int, *samples: str) -> list[str]:
    """A worker's /metrics, line by line: the `samples` named only (`?name[]=`, as
    prometheus_client's exposition answers it). A whole scrape cost the worker and its children
    about 10.6 ms of CPU after 100,000 events (its registry, and its child processes' read and
    parsed: docs/performance.md), and the benchmark reads a figure several times a second while
    it measures the worker."""
    query = urllib.parse.urlencode([("name[]", s) for s in samples])
    url = f"http://127.0.0.1:{port}/metrics" + (f"?{query}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode().splitlines()


def metric(port: int, name: str) -> float:
    """Sum of a metric's samples on a worker's /metrics (0 when absent)."""
    total = 0.0
    for line in _metrics_lines(port, name.split("{", 1)[0]):
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def by_label(port: int, name: str, label: str) -> dict[str, float]:
    """A metric's samples on a worker's /metrics by the value of one label (empty when absent)."""
    out: dict[str, float] = {}
    start = f'{name}{{{label}="'
    for line in _metrics_lines(port, name):
        if line.startswith(start):
            value = line[len(start) :].split('"', 1)[0]
            out[value] = out.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram(port: int, name: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by `le`, and its `_sum` and `_count`, from a
    worker's /metrics (empty when absent)."""
    out: dict[str, float] = {}
    for line in _metrics_lines(port, *(name + suffix for suffix in ("_bucket", "_sum", "_count"))):
        if line.startswith(name + "_bucket{le="):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((name + "_sum ", name + "_count ")):
            out[line.split(" ", 1)[0][len(name) + 1 :]] = float(line.rsplit(" ", 1)[1])
    return out


def histogram_figures(after: dict[str, float], before: dict[str, float]) -> dict[str, Any] | None:
    """Count, mean and p50/p90/p99 (interpolated within the buckets, in ms) of what a histogram
    observed between two readings (`histogram`); None when nothing was observed."""
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if count <= 0:
        return None
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after if le[0].isdigit())
    figures: dict[str, Any] = {
        "count": int(count),
        "mean_ms": round((after["sum"] - before.get("sum", 0.0)) / count * 1000, 1),
    }
    for q in (0.5, 0.9, 0.99):
        want, low, below = q * count, 0.0, 0.0
        value = None
        for bound, cumulative in bounds:
            if cumulative >= want:
                share = (want - below) / (cumulative - below) if cumulative > below else 1.0
                value = low + (bound - low) * share
                break
            low, below = bound, cumulative
        figures[f"p{round(q * 100)}_ms"] = round(value * 1000, 1) if value is not None else None
    return figures


def schedstat(path: str) -> tuple[float, float]:
    """(seconds on a core, seconds waiting on a run queue: ready, no core free) of one thread,
    from its `schedstat` file (e.g. /proc/thread-self/schedstat, /proc/<pid>/task/<tid>/schedstat)."""
    cpu, delay, _ = Path(path).read_text().split()
    return int(cpu) / 1e9, int(delay) / 1e9


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a worker's provider stage, PW_PROVIDER_STAGE=process, and
    its warehouse loader, PW_WAREHOUSE_LOADER=process; `child_role` tells them apart)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


#: The child processes a worker starts, by the argument after `partnerwatch` on their command line.
ROLES = ("provider-stage", "loader")


def child_role(pid: int) -> str:
    """What the process `pid` is, by its command line (`<python> -m partnerwatch ROLE ...`):
    "provider-stage", "loader", or "other" (anything else, or a process that ended meanwhile)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    for i, arg in enumerate(args[:-1]):
        if os.path.basename(arg) == b"partnerwatch":  # `-m partnerwatch` or the console script
            role = args[i + 1].decode(errors="replace")
            return role if role in ROLES else "other"
    return "other"


def children_of_role(pid: int, role: str) -> list[int]:
    """The child processes of `pid` that `child_role` gives `role`."""
    return [c for c in children(pid) if child_role(c) == role]


def tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid` and of its live child processes."""
    total = 0.0
    for p in (pid, *children(pid)):
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            total += cpu_seconds(p)
    return total


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_rss_mib(pid: int, role: str = "provider-stage") -> float:
    """RSS of the live child processes of `pid` of one `child_role` (by default its provider
    stage), MiB."""
    total = 0.0
    for c in children_of_role(pid, role):
        with contextlib.suppress(OSError):  # a child that ended meanwhile
            total += rss_mib(c)
    return total


def broker_pid() -> int | None:
    # a broker of its own (partnerwatch/kafka_runner/kafka.sh) when PW_KAFKA_HOME is set
    home = os.environ.get("PW_KAFKA_HOME")
    path = (Path(home) if home else REPO_ROOT / ".cache" / "kafka") / "broker.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
