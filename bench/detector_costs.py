"""CPU per event of each detector, in-process, on the benchmark's mix (no Kafka).

The events are the ones `bench.ingest_stages` detects (bench/workload.py `stream`: validated,
masked and sequenced by the same functions as the ingest service); every event then goes
through `detectors.run.apply_event` with its `timings` on, which adds each detector's time
under its id (the worker samples the same per-detector timings for its metrics,
streams/detect_metrics.py). A run starts from empty state; each figure is the median over
`--runs` runs of the detector's total time divided by the number of events (all events, not only
those the detector looks at), in µs. Timing adds a clock read per detector per event, so the sum
is somewhat above the detect stage of `bench.ingest_stages`.

Shared work: the event's time (`detectors.windows.epoch_ms`, which remembers the last time read)
is parsed before the detectors run and shown as a row of its own; the per-event memo of
`Context` (`covering`, `declared_network`) is charged to the first detector that asks
(impossible_travel, in the detectors' order, for the declared network).

The detectors run as built (compiled where the optional mypyc build is present), or pure Python
with `--pure-detectors`. Results go to bench/results/<date>-detector-costs.json and .md.

    python -m bench.detector_costs [--count 50000] [--runs 3] [--pure-detectors] [--label L]
        [--before bench/results/<an earlier run>.json]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

#: The row of the event-time parse every detector shares (detectors/windows.py `epoch_ms`).
SHARED = "(shared: event time parse)"


def sequenced(messages: list[tuple[bytes, bytes]]) -> list[tuple[dict[str, Any], int]]:
    """The events of `messages` as the ingest service detects them, with their `seq`."""
    from bench.ingest_stages import Stages
    from pipeline.config import Settings

    core = Stages(Settings.from_env({}))
    out: list[tuple[dict[str, Any], int]] = []
    for start in range(0, len(messages), 500):
        chunk = messages[start : start + 500]
        validated = core.stage_validate(chunk, range(start, start + len(chunk)))
        out.extend(core.stage_sequence(core.stage_mask(validated)))
    return out


def run_once(entries: list[tuple[dict[str, Any], int]]) -> tuple[dict[str, float], float, int]:
    """Every entry through detection, timed per detector: seconds per detector, the detection's
    CPU seconds in all, and how many alert versions came out."""
    from detectors.run import apply_event, new_state
    from detectors.windows import epoch_ms
    from pipeline.config import Settings

    config = Settings.from_env({}).detect
    states: dict[str, dict[str, Any]] = {}
    open_alerts: dict[str, Any] = {}
    timings: dict[str, float] = {}
    versions = 0
    gc.collect()
    started = time.process_time()
    clock = time.perf_counter
    shared = 0.0
    for event, seq in entries:
        # the event's time, parsed once and remembered for every detector: timed on its own,
        # not charged to whichever detector asks first
        begun = clock()
        epoch_ms(event["occurred_at"])
        shared += clock() - begun
        state = states.get(event["account_id"])
        if state is None:
            state = states[event["account_id"]] = new_state()
        applied = apply_event(state, event, seq, config, None, open_alerts.get, timings)
        if applied is None:
            continue
        for alert in applied.alerts:
            open_alerts[alert["alert_id"]] = alert
            versions += 1
        for key in applied.closed:
            open_alerts.pop(key, None)
    timings[SHARED] = shared
    return timings, time.process_time() - started, versions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--label", default="", help="a suffix for the result files")
    parser.add_argument("--pure-detectors", action="store_true")
    parser.add_argument(
        "--before",
        help="an earlier result file (.json) of this script, shown beside this one's figures",
    )
    args = parser.parse_args()
    if args.pure_detectors:
        from tools.compile_detectors import pure_python

        pure_python()  # before anything imports detectors
    from bench.ingest_stages import detectors_variant
    from bench.workload import stream, write_results

    entries = sequenced(stream(args.count))
    runs: list[dict[str, float]] = []
    totals: list[float] = []
    versions = 0
    for i in range(args.runs):
        timings, total, versions = run_once(entries)
        runs.append(timings)
        totals.append(total)
        print(f"run {i + 1}: detection {total / len(entries) * 1e6:.1f} µs per event", flush=True)
    names = sorted(runs[0])
    per_event = {
        n: round(statistics.median(r.get(n, 0.0) for r in runs) / len(entries) * 1e6, 2)
        for n in names
    }
    ranked = dict(sorted(per_event.items(), key=lambda kv: -kv[1]))
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.detector_costs --count {args.count} --runs {args.runs}"
        + (" --pure-detectors" if args.pure_detectors else "")
        + (f" --label {args.label}" if args.label else ""),
        "events": len(entries),
        "alert_versions": versions,
        "detectors": detectors_variant(),
        "detection_cpu_us_per_event": round(statistics.median(totals) / len(entries) * 1e6, 2),
        "sum_of_detectors_us_per_event": round(sum(ranked.values()), 2),
        "us_per_event": ranked,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }
    before: dict[str, Any] | None = None
    if args.before:
        before = orjson.loads(Path(args.before).read_bytes())
        figures["before"] = {
            k: before[k]
            for k in ("measured_at", "command", "detection_cpu_us_per_event", "us_per_event")
        }
    was: dict[str, Any] = before["us_per_event"] if before is not None else {}
    lines = [
        f"# CPU per event by detector, {figures['measured_at']}",
        "",
        f"Command: `{figures['command']}`; median of {args.runs} runs, per event of the mix"
        f" ({len(entries):,} events, {versions:,} alert versions).",
        "",
        f"Detectors: {figures['detectors']}. Detection in all (process CPU, timings on):"
        f" {figures['detection_cpu_us_per_event']} µs per event; sum of the detectors:"
        f" {figures['sum_of_detectors_us_per_event']}.",
        "",
        *(
            [
                f"Before: `{before['command']}` at {before['measured_at']}: detection in all"
                f" {before['detection_cpu_us_per_event']} µs per event.",
                "",
                "| detector | µs per event | before |",
                "|---|---|---|",
            ]
            if before is not None
            else ["| detector | µs per event |", "|---|---|"]
        ),
        *(
            f"| {n} | {v} |" + (f" {was.get(n, '')} |" if before is not None else "")
            for n, v in ranked.items()
        ),
        "",
    ]
    write_results("detector-costs", args.label, figures, lines)


if __name__ == "__main__":
    main()
