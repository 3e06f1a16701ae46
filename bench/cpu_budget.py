"""Where one worker's CPU goes on a backlog, by process and thread, per event, beside the broker's.

Produces `--count` events of the benchmark mix (bench/workload.py) to a fresh namespace, starts
one worker (bench/workload.py `WORKER_ENV`, plus `--env`), and reads the CPU time of every thread
of the worker, of its child processes (the provider stage, `PW_PROVIDER_STAGE=process`) and of
the broker from /proc: first once the worker has accepted `--skip` of the events (its start-up,
imports and first fetches left out), then once every event is accepted, stored in
`audit.events` and folded by the provider stage. Each figure is the CPU of the threads of one
name over the events between the two readings, in µs per event. Threads are named as the OS
knows them (chDB's own: `ThreadPool`, `MergeMutate`, ...); the interpreter's threads, all
`python` to the OS, are named by `py-spy dump` where py-spy is installed (`MainThread`: the
event loop the ingest service runs on; `warehouse-loader` and the `uvloop_*` thread that runs its
inserts; `provider-stage` in the child). A thread that ended between the readings is not
counted.

The total per event bounds the rate of one worker on this machine: `cores` x 1,000,000 over the
worker's, its children's and the broker's µs per event, were every core busy with nothing else.

Medians over `--runs` runs; nothing is asserted. Results: bench/results/<date>-cpu-budget[-<label>].

    python -m bench.cpu_budget [--count 300000] [--runs 3] [--skip 0.05] [--env K=V ...] [--label L]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procstats import broker_pid, children, cpu_seconds, metric
from bench.profile import thread_cpu
from bench.workload import WORKER_ENV, StoredStream, produce, write_results
from partnerwatch.local_worker import Namespace, Worker, delete_namespace_topics

#: `py-spy dump`'s line for a thread: its native id and its Python name.
_DUMP_THREAD = re.compile(r'^Thread (\d+) \((?:idle|active|[^)]*)\): "([^"]*)"', re.MULTILINE)


def thread_times(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (OS thread name, CPU seconds) for every live thread of `pid` (`bench.profile`'s
    reading, keyed by tid)."""
    return {int(tid): (name, cpu) for (tid, name), cpu in thread_cpu(pid).items()}


def python_names(pid: int) -> dict[int, str]:
    """tid -> the interpreter's name of the thread (py-spy), or nothing without py-spy."""
    if shutil.which("py-spy") is None:
        return {}
    try:
        dump = subprocess.run(
            ["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(tid): name for tid, name in _DUMP_THREAD.findall(dump)}


def one_run(root: Path, stream: StoredStream, env: dict[str, str], skip: float) -> dict[str, Any]:
    ns = Namespace(root, extra_env={**WORKER_ENV, **env})
    produce(ns, stream)
    count = len(stream)
    worker = Worker(ns)
    broker = broker_pid()
    try:
        worker.start()
        assert worker.proc is not None
        pid = worker.proc.pid
        deadline = time.monotonic() + 1800
        while (accepted0 := metric(ns.port, "pw_events_accepted_total")) < count * skip:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start: {worker.log_tail()}")
            time.sleep(0.05)
        started = time.monotonic()
        before = {p: thread_times(p) for p in (pid, *children(pid))}
        broker0 = cpu_seconds(broker) if broker else 0.0
        while not (
            metric(ns.port, "pw_events_accepted_total") >= count
            and metric(ns.port, "pw_provider_stage_events_total") >= count
            and int(ns.scalar("SELECT count() FROM audit.events")) >= count
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not finish: {worker.log_tail()}")
            time.sleep(0.25)
        seconds = time.monotonic() - started
        after = {p: thread_times(p) for p in (pid, *children(pid))}
        broker1 = cpu_seconds(broker) if broker else 0.0
        names = {p: python_names(p) for p in after}
    finally:
        worker.stop()
        delete_namespace_topics(ns.settings, [ns.name])
    events = count - accepted0
    processes: dict[str, dict[str, float]] = {}
    for p, threads in after.items():
        role = "worker" if p == pid else "provider stage process"
        per_name: dict[str, float] = collections.defaultdict(float)
        for tid, (os_name, cpu) in threads.items():
            name = names[p].get(tid, os_name)
            per_name[name] += cpu - before.get(p, {}).get(tid, (os_name, 0.0))[1]
        processes[role] = {
            n: round(c / events * 1e6, 1)
            for n, c in sorted(per_name.items(), key=lambda item: -item[1])
            if c / events > 5e-8
        }
    return {
        "events": events,
        "seconds": round(seconds, 1),
        "events_per_second": round(events / seconds),
        "processes": processes,
        "broker_us_per_event": round((broker1 - broker0) / events * 1e6, 1) if broker else None,
    }


def median_budget(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per process and thread name, the median over the runs (0 where a run lacks it)."""
    out: dict[str, dict[str, float]] = {}
    for role in dict.fromkeys(r for run in runs for r in run["processes"]):
        names = dict.fromkeys(n for run in runs for n in run["processes"].get(role, {}))
        out[role] = {
            n: round(
                statistics.median(run["processes"].get(role, {}).get(n, 0.0) for run in runs), 1
            )
            for n in names
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--skip", type=float, default=0.05, help="share of the events accepted before measuring"
    )
    parser.add_argument("--env", action="append", default=[], help="K=V for the worker")
    parser.add_argument("--label", default="", help="a suffix for the result files")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    stream = StoredStream(args.count)
    runs = []
    try:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="pw-cpu-budget-") as tmp:
                run = one_run(Path(tmp), stream, env, args.skip)
            runs.append(run)
            total = sum(sum(p.values()) for p in run["processes"].values())
            print(
                f"run {i + 1}: {run['events_per_second']:,} events/s; worker and children "
                f"{total:.1f}, broker {run['broker_us_per_event']} µs per event"
            )
    finally:
        stream.remove()
    budget = median_budget(runs)
    broker = statistics.median(r["broker_us_per_event"] or 0.0 for r in runs)
    total = sum(sum(p.values()) for p in budget.values()) + broker
    cores = os.cpu_count() or 1
    figures = {
        "command": "python -m bench.cpu_budget "
        + f"--count {args.count} --runs {args.runs} --skip {args.skip}"
        + "".join(f" --env {e}" for e in args.env)
        + (f" --label {args.label}" if args.label else ""),
        "cores": cores,
        "events_per_second": statistics.median(r["events_per_second"] for r in runs),
        "budget_us_per_event": budget,
        "broker_us_per_event": broker,
        "total_us_per_event": round(total, 1),
        "bound_events_per_second": round(cores * 1e6 / total) if total else None,
        "runs": runs,
    }
    lines = [
        f"# CPU per event by process and thread, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"Command: `{figures['command']}`; median of {args.runs} runs of one worker on a backlog "
        f"of {args.count:,} events ({figures['events_per_second']:,} events/s), from "
        f"{args.skip:.0%} of the events accepted until every event is stored and folded.",
        "",
        "| process | thread | µs per event |",
        "|---|---|---|",
    ]
    for role, threads in budget.items():
        lines += [f"| {role} | {name} | {us} |" for name, us in threads.items()]
        lines.append(f"| {role} | **all** | **{sum(threads.values()):.1f}** |")
    lines += [
        f"| broker | | {broker} |",
        f"| **all** | | **{total:.1f}** |",
        "",
        f"On {cores} cores, {total:.1f} µs per event bounds one worker with its broker at "
        f"{figures['bound_events_per_second']:,} events/s, were every core busy with nothing else.",
        "",
    ]
    write_results("cpu-budget", args.label, figures, lines)


if __name__ == "__main__":
    main()
