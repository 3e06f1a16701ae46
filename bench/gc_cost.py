"""What Python's garbage collector costs a worker on a backlog, per generation.

Produces `--count` events of the benchmark mix (bench/workload.py) to a fresh namespace and
starts one worker (compiled where the build is present) with a probe on its `sys.path`: a
`sitecustomize` module that times every collection through `gc.callbacks` and writes, every
second (and at exit), how many collections of each generation ran, their time, and when each
collection of 1 ms or more ran and how long it took, to a file per process. After `--warmup`
seconds it reads the worker's counters and `pw_events_accepted_total`, again after
`--seconds`, and reports for the window: events/s, and per generation the collections, their
time per event accepted (µs) and the longest one (the probe's readings are up to a second old
when read). Collections hold the interpreter lock whichever thread runs them, so their time is time the
ingest service cannot run. `--threshold A,B,C` runs the worker with those thresholds in place
of `streams/collector.py` `GC_THRESHOLD` (the probe turns the worker's own
`gc.set_threshold` call into one with these), to compare.

Results go to bench/results/<date>-gc-cost[-<label>].json and .md. The probe's own cost (a
clock read per collection, one small file write per second) is in the figures.

    python -m bench.gc_cost [--count 400000] [--seconds 20] [--warmup 8] [--label L]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procstats import metric
from bench.workload import RESULTS, WORKER_ENV, stream, worker_on_backlog
from partnerwatch.local_worker import Namespace

REPO = Path(__file__).resolve().parent.parent

#: The probe, loaded by the worker's interpreter at start (`sitecustomize`).
PROBE = """
import atexit, collections, gc, json, os, threading, time
_n = [0, 0, 0]; _spent = [0.0, 0.0, 0.0]; _started = [0.0]
#: (wall time, generation, seconds) of each collection of 1 ms or more, the latest ones
_pauses = collections.deque(maxlen=20000)
def _timed(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    g = info["generation"]
    took = time.perf_counter() - _started[0]
    _n[g] += 1; _spent[g] += took
    if took >= 0.001:
        _pauses.append((time.time(), g, took))
gc.callbacks.append(_timed)
if os.environ.get("PW_GC_PROBE_THRESHOLD"):
    # the process's own gc.set_threshold call (the worker's, once its state is loaded) sets these
    _forced = tuple(int(x) for x in os.environ["PW_GC_PROBE_THRESHOLD"].split(","))
    _set_threshold = gc.set_threshold
    gc.set_threshold = lambda *_: _set_threshold(*_forced)
def _write_once():
    path = os.path.join(os.environ["PW_GC_PROBE_DIR"], f"{os.getpid()}.json")
    doc = {"n": list(_n), "seconds": list(_spent), "pauses": list(_pauses),
           "threshold": gc.get_threshold(), "at": time.time()}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(path + ".tmp", path)
def _write():
    while True:
        time.sleep(1)
        _write_once()
atexit.register(_write_once)
threading.Thread(target=_write, daemon=True, name="gc-probe").start()
"""


def read_probe(folder: Path, pid: int) -> dict[str, Any]:
    return json.loads((folder / f"{pid}.json").read_text())


def window(before: dict[str, Any], after: dict[str, Any], events: float) -> list[dict[str, Any]]:
    """Per generation: collections between the two readings, their µs per event, and the
    longest of them in ms (0.0: none of 1 ms or more)."""
    longest = [0.0, 0.0, 0.0]
    for at, g, took in after["pauses"]:
        if before["at"] < at <= after["at"]:
            longest[g] = max(longest[g], took * 1000)
    return [
        {
            "generation": g,
            "collections": after["n"][g] - before["n"][g],
            "us_per_event": (after["seconds"][g] - before["seconds"][g]) / events * 1e6
            if events
            else 0.0,
            "longest_ms": longest[g],
        }
        for g in range(3)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--threshold", default="", help="A,B,C in place of GC_THRESHOLD")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-gc-cost-") as tmp:
        probe = Path(tmp) / "probe"
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(PROBE)
        env = dict(WORKER_ENV)
        env["PYTHONPATH"] = os.pathsep.join([str(probe), str(REPO)])
        env["PW_GC_PROBE_DIR"] = str(probe)
        if args.threshold:
            env["PW_GC_PROBE_THRESHOLD"] = args.threshold
        ns = Namespace(Path(tmp) / "ns", extra_env=env)
        with worker_on_backlog(ns, stream(args.count)) as pid:
            time.sleep(args.warmup)
            events0, started, before = (
                metric(ns.port, "pw_events_accepted_total"),
                time.monotonic(),
                read_probe(probe, pid),
            )
            time.sleep(args.seconds)
            events1, ended, after = (
                metric(ns.port, "pw_events_accepted_total"),
                time.monotonic(),
                read_probe(probe, pid),
            )
    events = events1 - events0
    if events < 0.9 * args.seconds * 1000:
        raise SystemExit(
            f"only {events:,.0f} events accepted in the window: the backlog ran out or the worker "
            "stalled (raise --count, or lower --seconds)"
        )
    rate = events / (ended - started)
    rows = window(before, after, events)
    stem = RESULTS / (
        f"{datetime.now(UTC):%Y-%m-%d}-gc-cost" + (f"-{args.label}" if args.label else "")
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = (
        f"python -m bench.gc_cost --count {args.count} --seconds {args.seconds:g} "
        f"--warmup {args.warmup:g}"
        + (f" --threshold {args.threshold}" if args.threshold else "")
        + (f" --label {args.label}" if args.label else "")
    )
    doc = {
        "command": command,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        "events": events,
        "events_per_s": rate,
        "threshold": after["threshold"],
        "generations": rows,
    }
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"# The garbage collector's cost in a worker, {doc['at']}",
        "",
        f"Command: `{command}`; one worker on a backlog, {events:,.0f} events accepted in "
        f"{ended - started:.1f} s (**{rate:,.0f} events/s**), thresholds "
        f"{tuple(after['threshold'])}.",
        "",
        "| generation | collections | µs per event | longest, ms |",
        "|---|---|---|---|",
        *(
            f"| {r['generation']} | {r['collections']} | {r['us_per_event']:.2f} | "
            f"{r['longest_ms']:.1f} |"
            for r in rows
        ),
        "",
        f"All generations: {sum(r['us_per_event'] for r in rows):.2f} µs per event.",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
