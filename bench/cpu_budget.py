"""Where one worker's CPU goes on a backlog, by process and thread, per event, beside the broker's.

Produces `--count` events of the benchmark mix (bench/workload.py) to a fresh namespace, starts
one worker (bench/workload.py `WORKER_ENV`, plus `--env`), and reads the CPU time of every thread
of the worker, of its child processes (the provider stage, `PW_PROVIDER_STAGE=process`, and the
warehouse loader, `PW_WAREHOUSE_LOADER=process`, told apart by their command lines) and of the
broker from /proc: first once the worker has accepted `--skip` of the events (its start-up,
imports and first fetches left out), then once every event is accepted, stored in
`audit.events` and folded by the provider stage. Each figure is the CPU of the threads of one
name over the events between the two readings, in µs per event. Threads are named as the OS
knows them (chDB's own: `ThreadPool`, `MergeMutate`, ...); the interpreter's threads, all
`python` to the OS, are named by `py-spy dump` where py-spy is installed (`MainThread`: the
event loop the ingest service runs on; `warehouse-loader` and the `uvloop_*` thread that runs its
inserts; `provider-stage` in the child). A thread that ended between the readings is not
counted. Beside each thread's CPU, the time it waited for a core while it could have run (the
scheduler's run-queue delay, `/proc/<pid>/task/<tid>/schedstat`), and the machine's idle share
between the two readings (`/proc/stat`): a thread that waits while the machine idles is held up
by something else (the broker, a lock), one that waits while no core idles by the other threads.

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

from bench.procstats import (
    CLK_TCK,
    broker_pid,
    child_role,
    children,
    cpu_seconds,
    metric,
    schedstat,
)
from bench.profile import thread_cpu
from bench.workload import WORKER_ENV, StoredStream, interpreter, produce, write_results
from partnerwatch.local_worker import Namespace, Worker, delete_namespace_topics
from tools import kafka_crc

#: How the report names a worker's child process, by its `child_role`.
CHILD_LABELS = {"provider-stage": "provider stage process", "loader": "loader process"}

#: `py-spy dump`'s line for a thread: its native id and its Python name.
_DUMP_THREAD = re.compile(r'^Thread (\d+) \((?:idle|active|[^)]*)\): "([^"]*)"', re.MULTILINE)


def thread_times(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (OS thread name, CPU seconds) for every live thread of `pid` (`bench.profile`'s
    reading, keyed by tid)."""
    return {int(tid): (name, cpu) for (tid, name), cpu in thread_cpu(pid).items()}


def thread_waits(pid: int) -> dict[int, float]:
    """tid -> seconds the thread waited on a run queue (ready to run, no core free), for every
    live thread of `pid` (`schedstat`'s second field, in ns)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[int(tid)] = schedstat(f"/proc/{pid}/task/{tid}/schedstat")[1]
        except OSError:
            continue  # a thread that ended meanwhile
    return out


def machine_times() -> tuple[float, float]:
    """(idle, all) seconds of every core since boot (`/proc/stat`'s `cpu` line; idle counts
    waiting for I/O too)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[3] + fields[4]) / CLK_TCK, sum(fields[:8]) / CLK_TCK


def per_event(
    after: dict[int, float], before: dict[int, float], names: dict[int, str], events: float
) -> dict[str, float]:
    """µs per event by thread name, of a per-thread reading taken twice (a thread new since the
    first reading counts from 0); names of less than 0.05 µs left out, the largest first."""
    per_name: dict[str, float] = collections.defaultdict(float)
    for tid, value in after.items():
        per_name[names.get(tid, str(tid))] += value - before.get(tid, 0.0)
    return {
        n: round(v / events * 1e6, 1)
        for n, v in sorted(per_name.items(), key=lambda item: -item[1])
        if v / events > 5e-8
    }


def threads_per_event(
    after: dict[int, tuple[str, float]],
    before: dict[int, tuple[str, float]],
    py_names: dict[int, str],
    events: float,
) -> dict[str, float]:
    """`per_event` of two `thread_times` readings of one process, each thread named as the
    interpreter names it (`python_names`) or else as the OS does."""
    return per_event(
        {tid: cpu for tid, (_, cpu) in after.items()},
        {tid: cpu for tid, (_, cpu) in before.items()},
        {tid: py_names.get(tid, os_name) for tid, (os_name, _) in after.items()},
        events,
    )


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
        pids = (pid, *children(pid))
        # which process each is, read while they run (a child's command line is gone once it ends)
        roles = {pid: "worker"} | {
            c: CHILD_LABELS.get(child_role(c), "other child process") for c in pids[1:]
        }
        before = {p: thread_times(p) for p in pids}
        waits0 = {p: thread_waits(p) for p in pids}
        broker0 = cpu_seconds(broker) if broker else 0.0
        broker_waits0 = thread_waits(broker) if broker else {}
        machine0 = machine_times()
        while not (
            metric(ns.port, "pw_events_accepted_total") >= count
            and metric(ns.port, "pw_provider_stage_events_total") >= count
            and int(ns.scalar("SELECT count() FROM audit.events")) >= count
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not finish: {worker.log_tail()}")
            time.sleep(0.25)
        seconds = time.monotonic() - started
        machine1 = machine_times()
        after = {p: thread_times(p) for p in pids}
        waits1 = {p: thread_waits(p) for p in pids}
        broker1 = cpu_seconds(broker) if broker else 0.0
        broker_waits1 = thread_waits(broker) if broker else {}
        names = {p: python_names(p) for p in after}
    finally:
        worker.stop()
        delete_namespace_topics(ns.settings, [ns.name])
    events = count - accepted0
    processes: dict[str, dict[str, float]] = {}
    waiting: dict[str, dict[str, float]] = {}
    for p, threads in after.items():
        role = roles[p]
        thread_names = {tid: names[p].get(tid, os_name) for tid, (os_name, _) in threads.items()}
        processes[role] = threads_per_event(threads, before.get(p, {}), names[p], events)
        waiting[role] = per_event(waits1[p], waits0.get(p, {}), thread_names, events)
    idle = machine1[0] - machine0[0]
    return {
        "events": events,
        "seconds": round(seconds, 1),
        "events_per_second": round(events / seconds),
        "processes": processes,
        "waiting_us_per_event": waiting,
        "broker_us_per_event": round((broker1 - broker0) / events * 1e6, 1) if broker else None,
        "broker_waiting_us_per_event": round(
            (sum(broker_waits1.values()) - sum(broker_waits0.values())) / events * 1e6, 1
        )
        if broker
        else None,
        "machine_idle_share": round(idle / max(machine1[1] - machine0[1], 1e-9), 3),
    }


def median_budget(runs: list[dict[str, Any]], key: str = "processes") -> dict[str, Any]:
    """Per process and thread name, the median over the runs of `run[key]` (0 where a run lacks
    it)."""
    out: dict[str, dict[str, float]] = {}
    for role in dict.fromkeys(r for run in runs for r in run[key]):
        names = dict.fromkeys(n for run in runs for n in run[key].get(role, {}))
        out[role] = {
            n: round(statistics.median(run[key].get(role, {}).get(n, 0.0) for run in runs), 1)
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
    waiting = median_budget(runs, "waiting_us_per_event")
    broker = statistics.median(r["broker_us_per_event"] or 0.0 for r in runs)
    broker_waiting = statistics.median(r["broker_waiting_us_per_event"] or 0.0 for r in runs)
    idle = statistics.median(r["machine_idle_share"] for r in runs)
    total = sum(sum(p.values()) for p in budget.values()) + broker
    cores = os.cpu_count() or 1
    figures = {
        "command": "python -m bench.cpu_budget "
        + f"--count {args.count} --runs {args.runs} --skip {args.skip}"
        + "".join(f" --env {e}" for e in args.env)
        + (f" --label {args.label}" if args.label else ""),
        "cores": cores,
        "kafka_crc": kafka_crc.mode(),
        "interpreter": interpreter(),
        "events_per_second": statistics.median(r["events_per_second"] for r in runs),
        "budget_us_per_event": budget,
        "waiting_us_per_event": waiting,
        "broker_us_per_event": broker,
        "broker_waiting_us_per_event": broker_waiting,
        "machine_idle_share": idle,
        "total_us_per_event": round(total, 1),
        "bound_events_per_second": round(cores * 1e6 / total) if total else None,
        "runs": runs,
    }
    lines = [
        f"# CPU per event by process and thread, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"Command: `{figures['command']}`; median of {args.runs} runs of one worker on a backlog "
        f"of {args.count:,} events ({figures['events_per_second']:,} events/s), from "
        f"{args.skip:.0%} of the events accepted until every event is stored and folded;"
        f" aiokafka's CRC-32C in {figures['kafka_crc']} (tools/kafka_crc.py); {figures['interpreter']}.",
        "",
        "| process | thread | CPU, µs per event | waiting for a core, µs per event |",
        "|---|---|---|---|",
    ]
    for role, threads in budget.items():
        waits = waiting.get(role, {})
        lines += [
            f"| {role} | {name} | {us} | {waits.get(name, 0.0)} |" for name, us in threads.items()
        ]
        lines.append(
            f"| {role} | **all** | **{sum(threads.values()):.1f}** | "
            f"**{sum(waits.values()):.1f}** |"
        )
    lines += [
        f"| broker | | {broker} | {broker_waiting} |",
        f"| **all** | | **{total:.1f}** | |",
        "",
        f"The machine's cores were idle {idle:.1%} of the time between the two readings.",
        "",
        f"On {cores} cores, {total:.1f} µs per event bounds one worker with its broker at "
        f"{figures['bound_events_per_second']:,} events/s, were every core busy with nothing else.",
        "",
    ]
    write_results("cpu-budget", args.label, figures, lines)


if __name__ == "__main__":
    main()
