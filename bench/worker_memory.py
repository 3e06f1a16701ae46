"""Where the worker's memory goes: the real worker over pre-produced events, its RSS broken down.

Per run, a fresh namespace (its own topics, groups and embedded warehouse): `--count` events of
the benchmark's mix (bench/workload.py) are produced to its actions topic, then one
`partnerwatch worker` (the worker's settings of bench/workload.py `WORKER_ENV`, plus `--env`)
works through them. While it runs, every 0.25 s: its RSS (and, whenever it is the largest so
far, its breakdown by kind below: the "highest" row), and at each quarter of the events
accepted (and at the end, when the warehouse holds them all) a breakdown of its memory from
/proc/PID/smaps:

- `file`: file-backed pages (the chDB library's code and data, Python's, the other libraries');
- `anon` by kind of mapping: `heap` (glibc malloc's main arena, `[heap]`), `malloc arenas`
  (glibc's per-thread arenas: 64 MiB-aligned reservations, one per thread that allocates),
  `1 MiB` (Python's object allocator's arenas, 1 MiB each), `stacks` (thread stacks: 8 MiB
  mappings behind a guard page that hold a thread's stack pointer, read from
  /proc/PID/task/TID/syscall), `8 MiB, no thread` (mappings of that shape holding no thread's
  stack pointer: numpy's buffers such as the dedup window's day filters of 8 MiB each, or, rarely,
  the stack of a thread that was running when read, which gives no stack pointer), `other anon`
  (everything else: chDB's own allocator's extents, numpy and the filters, large buffers);
- chDB's own count of the memory it tracks (`system.metrics` `MemoryTracking`, through
  /v1/sql when its guard allows it: it did not in the runs of 2026-12-03, so it is None in the
  JSON);
- the probe's figures (bench/memory_probe/sitecustomize.py), and with `--trim` what one
  `malloc_trim(0)` gives back at each snapshot.

Peak RSS is the kernel's high-water mark (VmHWM). Results go to
bench/results/<date>-worker-memory[-<label>].json and .md; `--runs` runs are done in a row and
the report gives each run and the median.

    python -m bench.worker_memory [--count 300000] [--runs 3] [--env K=V ...] [--label L]
        [--launcher "env MALLOC_ARENA_MAX=2"]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.procstats import children_of_role, metric, rss_mib, tree_cpu_seconds
from bench.workload import WORKER_ENV, StoredStream, produce, write_results
from partnerwatch.local_worker import CREATED, Namespace, Worker, delete_namespace_topics

_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")
KINDS = ("file", "heap", "malloc arenas", "1 MiB", "stacks", "8 MiB, no thread", "other anon")


def stack_pointers(pid: int) -> list[int]:
    """Each thread's user stack pointer, from /proc/PID/task/TID/syscall (`nr args... sp pc`, or
    `-1 sp pc` between system calls); a thread that is running gives none, nor one that ended or
    that this user may not inspect."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "syscall").read_text().split()
        except OSError:
            continue
        if len(fields) >= 3 and fields[-2].startswith("0x"):
            out.append(int(fields[-2], 16))
    return out


def smaps(pid: int) -> dict[str, float]:
    """The process's resident memory by kind of mapping, MiB (see the module's docstring)."""
    try:
        pointers = stack_pointers(pid)
    except OSError:
        pointers = []
    return classify(Path(f"/proc/{pid}/smaps").read_text(), pointers)


def classify(text: str, pointers: list[int]) -> dict[str, float]:
    """Resident memory by kind, MiB, of an smaps text whose threads' stack pointers are `pointers`."""
    out = dict.fromkeys(KINDS, 0.0)
    lines = text.splitlines()
    maps: list[tuple[int, int, str, int, int]] = []  # start, end, name, rss kB, anon kB
    for line in lines:
        head = _HEADER.match(line)
        if head:
            maps.append((int(head[1], 16), int(head[2], 16), head[3], 0, 0))
        elif line.startswith("Rss:"):
            s, e, n, _, a = maps[-1]
            maps[-1] = (s, e, n, int(line.split()[1]), a)
        elif line.startswith("Anonymous:"):
            s, e, n, r, _ = maps[-1]
            maps[-1] = (s, e, n, r, int(line.split()[1]))
    arena = 64 * 1024 * 1024
    for i, (start, end, name, rss, anon) in enumerate(maps):
        out["file"] += (rss - anon) / 1024
        if not anon:
            continue
        size = end - start
        if name == "[heap]":
            kind = "heap"
        elif name.startswith("[stack"):
            kind = "stacks"
        elif name:
            kind = "file"  # private dirty pages of a file mapping (relocations, .data, .bss)
        elif (
            start % arena == 0
            and i + 1 < len(maps)
            and size + (maps[i + 1][1] - maps[i + 1][0]) == arena
        ):
            kind = "malloc arenas"  # a glibc arena: its used part, then its reserved rest
        elif start % arena == 0 and size == arena:
            kind = "malloc arenas"
        elif size == 1024 * 1024:
            kind = "1 MiB"
        elif (
            i > 0
            and maps[i - 1][1] == start
            and maps[i - 1][1] - maps[i - 1][0] == 4096
            and size
            in (
                8 * 1024 * 1024 - 4096,
                8 * 1024 * 1024,
            )
        ):
            kind = "stacks" if any(start <= sp < end for sp in pointers) else "8 MiB, no thread"
        else:
            kind = "other anon"
        out[kind] += anon / 1024
    return {k: round(v, 1) for k, v in out.items()}


def rollup(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def chdb_tracked(ns: Namespace) -> float | None:
    try:
        return round(
            float(ns.scalar("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'"))
            / 1024
            / 1024,
            1,
        )
    except Exception:
        return None


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


PROBE = Path(__file__).resolve().parent / "memory_probe"


def probe(pid: int, out: Path, deep: bool) -> dict[str, Any] | None:
    """One line of bench/memory_probe/sitecustomize.py's probe in the worker (None: no answer)."""
    flag = Path(f"{out}.deep")
    if deep:
        flag.touch()
    before = len(out.read_text().splitlines()) if out.exists() else 0
    os.kill(pid, signal.SIGRTMIN + 5)
    deadline = time.monotonic() + (120 if deep else 10)
    try:
        while time.monotonic() < deadline:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) > before:
                return dict(orjson.loads(lines[before]))
            time.sleep(0.05)
        return None
    finally:
        flag.unlink(missing_ok=True)


def snapshot(pid: int, ns: Namespace, label: str, out: Path, deep: bool = False) -> dict[str, Any]:
    snap = {
        "at": label,
        "rss": round(rss_mib(pid), 1),
        "rollup": rollup(pid),
        "kinds": smaps(pid),
        "chdb_tracked": chdb_tracked(ns),
        "threads": threads(pid),
    }
    snap["probe"] = probe(pid, out, deep)
    snap["stage_process"] = child_process(pid, "provider-stage")
    if loader := child_process(pid, "loader"):
        snap["loader_process"] = loader
    return snap


def child_process(pid: int, role: str) -> dict[str, Any] | None:
    """The worker's child process of one `child_role` (its provider stage, or its warehouse
    loader): RSS and by kind of mapping."""
    for child in children_of_role(pid, role):
        try:
            return {"rss": round(rss_mib(child), 1), "kinds": smaps(child)}
        except OSError:  # it ended meanwhile
            continue
    return None


def one_run(
    root: Path, stream: StoredStream, env: dict[str, str], trim: bool = False
) -> dict[str, Any]:
    out = root / f"probe-{time.monotonic_ns()}.jsonl"
    if trim:
        Path(f"{out}.trim").touch()
    paths = [p for p in (os.environ.get("PYTHONPATH"), str(PROBE)) if p]
    probe_env = {"PYTHONPATH": os.pathsep.join(paths), "BENCH_MEMORY_PROBE": str(out)}
    ns = Namespace(root, extra_env={**WORKER_ENV, **env, **probe_env})
    produce(ns, stream)
    count = len(stream)
    worker = Worker(ns)
    samples: list[tuple[float, float, float, float]] = []  # (seconds, accepted, rss, VmHWM)
    snaps: list[dict[str, Any]] = []
    highest: dict[str, Any] = {}
    try:
        worker.start()
        assert worker.proc is not None
        pid = worker.proc.pid
        snaps.append(snapshot(pid, ns, "started", out))
        started = time.monotonic()
        cpu_started = tree_cpu_seconds(pid)
        stored = False
        while not stored and time.monotonic() - started < 1800:
            accepted = metric(ns.port, "pw_events_accepted_total")
            rss = round(rss_mib(pid), 1)
            hwm = round(rss_mib(pid, "VmHWM"), 1)
            samples.append((round(time.monotonic() - started, 2), accepted, rss, hwm))
            if rss > highest.get("rss", 0.0):  # the largest RSS sampled, by kind of mapping
                highest = {
                    "at": f"highest ({accepted / count:.0%})",
                    "rss": rss,
                    "kinds": smaps(pid),
                }
            quarter = len(snaps)  # "started" is 0
            if quarter <= 4 and accepted >= count * quarter / 4:
                snaps.append(snapshot(pid, ns, f"{quarter * 25} %", out))
            if accepted >= count:
                stored = int(ns.scalar("SELECT count() FROM audit.events")) >= count
            time.sleep(0.25)
        if not stored:
            raise SystemExit(f"the worker did not finish: {worker.log_tail()}")
        peak = round(rss_mib(pid, "VmHWM"), 1)  # before the deep probe, which allocates
        cpu = tree_cpu_seconds(pid) - cpu_started  # the worker and its children, snapshots included
        releases = metric(ns.port, "pw_warehouse_memory_releases_total")
        snaps.append(snapshot(pid, ns, "stored", out))
        time.sleep(5.0)
        snaps.append(snapshot(pid, ns, "idle 5 s", out, deep=True))
        seconds = time.monotonic() - started
    finally:
        worker.stop()
        delete_namespace_topics(ns.settings, [ns.name])
    loader = (
        {
            "loader_rss_mib_at_quarters": [
                (s.get("loader_process") or {}).get("rss") for s in snaps[1:5]
            ]
        }
        if any(s.get("loader_process") for s in snaps)
        else {}
    )
    return {
        "events": count,
        "seconds": round(seconds, 1),
        "peak_rss_mib": peak,
        "cpu_us_per_event": round(cpu / count * 1e6, 1),
        "warehouse_memory_releases": releases,
        "rss_mib_at_quarters": [s["rss"] for s in snaps[1:5]],
        "stage_rss_mib_at_quarters": [(s["stage_process"] or {}).get("rss") for s in snaps[1:5]],
        **loader,
        "max_rss_sampled_mib": round(max(r for _, _, r, _ in samples), 1),
        "peak_reached": peak_reached(samples, peak, count),
        "highest_sampled": highest,
        "snapshots": snaps,
        "samples": samples[:: max(1, len(samples) // 200)],
    }


def peak_reached(
    samples: list[tuple[float, float, float, float]], peak: float, count: int
) -> dict[str, Any]:
    """When the high-water mark reached the peak: between the last sample below it and the
    first at it (the peak is often a spike shorter than the 0.25 s between samples)."""
    for i, (seconds, accepted, _, hwm) in enumerate(samples):
        if hwm >= peak:
            before = samples[i - 1] if i else None
            return {
                "after_s": before[0] if before else None,
                "by_s": seconds,
                "events_accepted": f"{accepted / count:.0%}",
                "rss_before_mib": before[2] if before else None,
                "rss_after_mib": samples[i][2],
            }
    return {"by_s": None}  # reached after the last sample (at the end, while storing)


def _mib(v: Any) -> str:
    return f"{v / 1048576:.1f}" if isinstance(v, int | float) and v >= 0 else "-"


def row(s: dict[str, Any]) -> str:
    p = s.get("probe") or {}
    g, pm, w = p.get("glibc") or {}, p.get("pymalloc") or {}, p.get("worker") or {}
    ingest = w.get("ingest") if isinstance(w, dict) else None
    pending = sum(v.get("pending", 0) for v in ingest.values()) if isinstance(ingest, dict) else "-"
    stage = w.get("provider_stage") if isinstance(w, dict) else None
    buffered = stage.get("buffered", "-") if isinstance(stage, dict) else stage or "-"
    loader = w.get("loader") if isinstance(w, dict) else None
    batch = loader.get("records", "-") if isinstance(loader, dict) else "-"
    trim = p.get("trim")
    trimmed = (
        f"{trim['rss_before']:.0f} -> {trim['rss_after']:.0f} MiB in {trim['seconds'] * 1000:.0f} ms"
        if trim
        else "-"
    )
    return (
        f"| {s['at']} | {s['rss']} | "
        + " | ".join(str(s["kinds"][k]) for k in KINDS)
        + f" | {s['threads']} | {_mib(g.get('system_bytes'))} / {_mib(g.get('free_bytes'))}"
        f" | {_mib(pm.get('arenas_bytes'))} / {_mib(pm.get('allocated_blocks_bytes'))}"
        f" | {pending} / {buffered} / {batch} | {trimmed} |"
    )


def stage_row(s: dict[str, Any], key: str = "stage_process") -> str:
    """A snapshot's row of one child process (`key`: "stage_process" or "loader_process")."""
    stage = s.get(key)
    if not stage:
        return f"| {s['at']} | - |" + " - |" * len(KINDS)
    return (
        f"| {s['at']} | {stage['rss']} | "
        + " | ".join(str(stage["kinds"][k]) for k in KINDS)
        + " |"
    )


def highest_row(s: dict[str, Any]) -> str:
    """The largest RSS sampled (every 0.25 s) by kind of mapping: what the peak is made of."""
    if not s:
        return ""
    return (
        f"| {s['at']} | {s['rss']} | "
        + " | ".join(str(s["kinds"][k]) for k in KINDS)
        + " | - | - | - | - | - |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="worker setting K=V")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--trim", action="store_true", help="the probe also calls malloc_trim(0) at each snapshot"
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    stream = StoredStream(args.count)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pw-memory-") as tmp:
            for i in range(args.runs):
                run = one_run(Path(tmp), stream, env, args.trim)
                runs.append(run)
                print(
                    f"run {i + 1}: peak {run['peak_rss_mib']} MiB, quarters"
                    f" {run['rss_mib_at_quarters']} (stage process"
                    f" {run['stage_rss_mib_at_quarters']}"
                    + (
                        f", loader process {run['loader_rss_mib_at_quarters']}"
                        if "loader_rss_mib_at_quarters" in run
                        else ""
                    )
                    + f"), {run['seconds']} s,"
                    f" {run['cpu_us_per_event']} µs of CPU per event,"
                    f" {run['warehouse_memory_releases']:.0f} warehouse memory releases; peak reached"
                    f" {run['peak_reached']}",
                    flush=True,
                )
                for s in run["snapshots"]:
                    print("   ", s, flush=True)
    finally:
        stream.remove()
        from pipeline.config import Settings

        delete_namespace_topics(Settings.from_env(dict(os.environ)), CREATED)
    peak = statistics.median(r["peak_rss_mib"] for r in runs)
    quarters = [
        round(statistics.median(r["rss_mib_at_quarters"][q] for r in runs), 1) for q in range(4)
    ]
    command = (
        f"python -m bench.worker_memory --count {args.count} --runs {args.runs}"
        + "".join(f" --env {e}" for e in args.env)
        + (" --trim" if args.trim else "")
    )
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "worker_env": {**WORKER_ENV, **env},
        "peak_rss_mib_median": peak,
        "rss_mib_at_quarters_median": quarters,
        "runs": runs,
        "load_average": os.getloadavg(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }
    last = runs[-1]["snapshots"]
    lines = [
        f"# The worker's memory, {figures['measured_at']}",
        "",
        f"Command: `{command}`. Peak RSS (VmHWM) median {peak} MiB (runs:"
        f" {', '.join(str(r['peak_rss_mib']) for r in runs)}); RSS at 25/50/75/100 % of the"
        f" events accepted, medians: {' / '.join(str(q) for q in quarters)} MiB. CPU per event"
        f" (the worker and its children, from the first snapshot until the warehouse held every"
        f" event): {', '.join(str(r['cpu_us_per_event']) for r in runs)} µs. When the peak was"
        f" reached (between two samples, and the RSS sampled on either side):"
        f" {'; '.join(str(r['peak_reached']) for r in runs)}.",
        "",
        "The last run's memory by kind of mapping, MiB (bench/worker_memory.py says what each is),"
        " and what the probe in the worker saw (bench/memory_probe/sitecustomize.py): glibc malloc's"
        " bytes from the system and free in them, Python's object allocator's arenas and the blocks"
        " used in them, records pending in the ingest service (all partitions), in the provider"
        " stage's buffers and in the loader's batch; the last row is the largest RSS sampled (every"
        " 0.25 s, smaps only):",
        "",
        "| at | RSS | "
        + " | ".join(KINDS)
        + " | threads | glibc held / free | pymalloc arenas / used"
        " | pending / stage / loader | malloc_trim |",
        "|---" * (len(KINDS) + 7) + "|",
        *(row(s) for s in last),
        highest_row(runs[-1]["highest_sampled"]),
        "",
    ]
    for key, what in (
        ("stage_process", "provider stage process (the worker's child, PW_PROVIDER_STAGE=process)"),
        (
            "loader_process",
            "warehouse loader process (the worker's child, PW_WAREHOUSE_LOADER=process)",
        ),
    ):
        if key == "stage_process" or any(s.get(key) for s in last):  # the stage's: always
            lines += [
                f"The last run's {what}, MiB:",
                "",
                "| at | RSS | " + " | ".join(KINDS) + " |",
                "|---" * (len(KINDS) + 2) + "|",
                *(stage_row(s, key) for s in last),
                "",
            ]
    lines += [
        f"Load average at the end: {', '.join(f'{v:.2f}' for v in figures['load_average'])}.",
        "",
    ]
    write_results("worker-memory", args.label, figures, lines)


if __name__ == "__main__":
    main()
