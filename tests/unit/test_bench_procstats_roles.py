"""bench/procstats.py tells a worker's child processes apart by their command lines (the argument
after `partnerwatch`), and bench/run.py reports the loader process only when there is one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench.procstats import child_role, children, children_of_role, children_rss_mib, rss_mib
from bench.run import markdown

SLEEP = "import time; print('ready', flush=True); time.sleep(30)"


@pytest.fixture
def kids() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Children of this process whose command lines look like a worker's (with `-c`, what
    follows the code is in the command line as it is); each has started, so its RSS holds still."""
    args = {
        "stage": ["partnerwatch", "provider-stage", "--metrics-port", "1", "--parent-pid", "1"],
        "loader": ["partnerwatch", "loader", "--socket", "/tmp/x", "--metrics-port", "2"],
        "worker": ["partnerwatch", "worker"],
        "plain": [],
    }
    procs = {
        k: subprocess.Popen([sys.executable, "-c", SLEEP, *a], stdout=subprocess.PIPE)
        for k, a in args.items()
    }
    try:
        for p in procs.values():
            assert p.stdout is not None
            assert p.stdout.readline() == b"ready\n"
        yield procs
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)
            if p.stdout is not None:
                p.stdout.close()


def test_child_role_by_the_argument_after_partnerwatch(
    kids: dict[str, subprocess.Popen[bytes]],
) -> None:
    assert child_role(kids["stage"].pid) == "provider-stage"
    assert child_role(kids["loader"].pid) == "loader"
    assert child_role(kids["worker"].pid) == "other"
    assert child_role(kids["plain"].pid) == "other"
    assert child_role(os.getpid()) == "other"


def test_children_of_role_and_their_rss(kids: dict[str, subprocess.Popen[bytes]]) -> None:
    me = os.getpid()
    assert {p.pid for p in kids.values()} <= set(children(me))  # children() is every child
    assert children_of_role(me, "loader") == [kids["loader"].pid]
    assert children_of_role(me, "provider-stage") == [kids["stage"].pid]
    # by default the provider stage's RSS only, as before the loader process
    assert children_rss_mib(me) == pytest.approx(rss_mib(kids["stage"].pid), abs=2.0)
    assert children_rss_mib(me, "loader") == pytest.approx(rss_mib(kids["loader"].pid), abs=2.0)


def test_a_child_that_ended_has_no_role() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass", "partnerwatch", "loader"])
    proc.wait(10)
    assert child_role(proc.pid) == "other"
    assert child_role(2**22 + 1) == "other"  # above the kernel's largest pid


def _figures(**one: Any) -> dict[str, Any]:
    pipeline = {
        "events": 1000,
        "ingest_events_per_second": 100,
        "end_to_end_events_per_second": 90,
        "worker_cpu_cores_busy": 1.0,
        "worker_cpu_us_per_event": 50.0,
        "broker_cpu_us_per_event": 10.0,
        "worker_peak_rss_mib": 500.0,
        "worker_rss_mib_at_quarters": [400.0, 450.0, 480.0, 500.0],
        "stage_process_peak_rss_mib": 80.0,
        "stage_process_rss_mib_at_quarters": [70.0, 75.0, 78.0, 80.0],
        "warehouse": {"insert_rows_per_second": 1000, "active_parts_events": 3},
        **one,
    }
    return {
        "pipeline_1_worker": pipeline,
        "ceiling": {"events_per_second": 200},
        "ratio_to_ceiling": 0.45,
        "measured_at": "2026-12-06T00:00:00+00:00",
        "command": "python -m bench.run",
        "machine": {},
    }


def test_the_report_names_the_loader_process_only_when_there_is_one() -> None:
    without = markdown(_figures())
    assert "provider stage process RSS at 25/50/75/100 % | 70.0 / 75.0 / 78.0 / 80.0 MiB" in without
    assert "loader process" not in without
    assert "worker and children CPU per event" in without
    with_loader = markdown(
        _figures(
            loader_process_peak_rss_mib=30.0,
            loader_process_rss_mib_at_quarters=[20.0, 25.0, 28.0, 30.0],
        )
    )
    assert "| loader process peak RSS | 30.0 MiB |" in with_loader
    assert "| loader process RSS at 25/50/75/100 % | 20.0 / 25.0 / 28.0 / 30.0 MiB |" in with_loader
