"""Where a worker's time goes: py-spy over one worker working through pre-produced events.

Produces `--count` events of the benchmark mix (bench/run.py) to a fresh namespace, starts one
worker, lets it warm up, then samples it with py-spy (`--threads`, 50 Hz) for `--seconds`. It
reports events/s in the window, the CPU of each busy thread, and the main thread's top costs by
inclusive and by own (leaf) time, to bench/results/profile-<date>.md and on stdout. The raw
collapsed stacks are kept beside it for flame graphs (`profile-<date>.txt`).

    python -m bench.profile [--count 150000] [--seconds 30] [--warmup 10] [--gil | --idle]

Percentages are of the main thread's busy samples (the event loop, where the ingest service runs).
With `--gil`, py-spy records only the thread holding the interpreter lock at each sample, and the
report gives each thread's share of the window: how close the process is to being bound by one
interpreter (its threads, ingest, the warehouse loader and the provider stage, take turns).
With `--idle`, the samples of threads not running are kept too: the main thread's own time then
says where it waits as well as where it works (uvloop's poll for events when it has nothing to
do; any other line when it waits for the interpreter lock or a page).
Frames Faust and Python resume from C (uvloop) may lose their callers, so a cost can show up
without the agent above it: read the own-time list with that in mind.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.procstats import metric
from bench.workload import RESULTS, WORKER_ENV, stream, worker_on_backlog
from partnerwatch.local_worker import Namespace

#: Frames of the command line and start-up machinery, on every stack: left out of the lists.
_SCAFFOLDING = (
    "typer/",
    "click/",
    "<frozen runpy>",
    "faust/cli/",
    "partnerwatch/main.py",
    "partnerwatch/operations.py",
    "mode/worker.py",
    "faust/app/base.py:823",
)


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of `pid`, keyed by (tid, name)."""
    out: dict[tuple[str, str], float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_samples(raw: Path) -> dict[str, int]:
    """Samples per thread name (py-spy's `--threads` raw output: the first frame names the thread)."""
    out: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread = stack.split(";", 1)[0]
        out[thread.split(": ", 1)[-1].strip() or thread] += int(count)
    return dict(out)


def top_costs(
    raw: Path, limit: int
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(main-thread samples, top inclusive, top own) from py-spy's collapsed `--threads` output."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            if not any(s in frame for s in _SCAFFOLDING):
                inclusive[frame] += n
    share = 100.0 / max(total, 1)
    return (
        total,
        [(f, n * share) for f, n in inclusive.most_common(limit)],
        [(f, n * share) for f, n in own.most_common(limit)],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=150_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the interpreter lock"
    )
    parser.add_argument(
        "--idle", action="store_true", help="keep the samples of threads not running, too"
    )
    args = parser.parse_args()
    if args.gil and args.idle:
        parser.error("--gil and --idle do not go together")
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    stem = RESULTS / f"profile-{datetime.now(UTC):%Y-%m-%d}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pw-profile-") as tmp:
        ns = Namespace(Path(tmp), extra_env=dict(WORKER_ENV))
        with worker_on_backlog(ns, stream(args.count)) as pid:
            time.sleep(args.warmup)
            cpu0, events0, started = (
                thread_cpu(pid),
                metric(ns.port, "pw_events_accepted_total"),
                time.monotonic(),
            )
            subprocess.run(
                [
                    spy,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(args.seconds),
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(stem.with_suffix(".txt")),
                    "--nonblocking",
                    "--threads",
                    *(["--gil"] if args.gil else []),
                    *(["--idle"] if args.idle else []),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            elapsed = time.monotonic() - started
            events = metric(ns.port, "pw_events_accepted_total") - events0
            cpu1 = thread_cpu(pid)
    busy = sorted(((k[1], v - cpu0.get(k, 0.0)) for k, v in cpu1.items()), key=lambda kv: -kv[1])
    samples, inclusive, own = top_costs(stem.with_suffix(".txt"), args.top)
    window = args.seconds * 50
    by_thread = sorted(thread_samples(stem.with_suffix(".txt")).items(), key=lambda kv: -kv[1])
    lines = [
        f"# Worker profile {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        f"Command: `python -m bench.profile --count {args.count} --seconds {args.seconds} --warmup {args.warmup:g}"
        + (" --gil`" if args.gil else " --idle`" if args.idle else "`"),
        "",
        f"{events:,.0f} events sequenced in {elapsed:.1f} s: **{events / elapsed:,.0f} events/s**;"
        f" main thread {'sampled' if args.idle else 'busy'} in {samples} samples of"
        f" {args.seconds * 50}.",
        "",
        "| thread | cores |",
        "|---|---|",
        *(f"| {name} | {cpu / elapsed:.2f} |" for name, cpu in busy if cpu / elapsed >= 0.01),
        "",
        "| thread | share of the samples"
        + (
            " (holding the interpreter lock)"
            if args.gil
            else " (busy or idle)"
            if args.idle
            else " (busy)"
        )
        + " |",
        "|---|---|",
        *(f"| {name} | {n / window:.1%} |" for name, n in by_thread if n / window >= 0.005),
        "",
        "## Main thread, inclusive",
        "",
        "| % | frame |",
        "|---|---|",
        *(f"| {pct:.1f} | `{frame}` |" for frame, pct in inclusive),
        "",
        "## Main thread, own time",
        "",
        "| % | frame |",
        "|---|---|",
        *(f"| {pct:.1f} | `{frame}` |" for frame, pct in own),
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
