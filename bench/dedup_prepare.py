"""The dedup window's work before each batch (`DedupWindow.prepare`), per batch and per event, in
the state a worker's window reaches after a week: the ingest service's default bounded mode
(`PW_DEDUP_WINDOW_DAYS`, `PW_DEDUP_EXACT_SECONDS`, `PW_DEDUP_FILTER_MB`), a filled Bloom filter
for each earlier day of the window, and the exact tier of the last minutes in sorted runs.

The throughput benchmarks start from an empty window, where `prepare` asks one filter and a few
runs; a worker that has run for a week asks eight filters (each `PW_DEDUP_FILTER_MB` / 8 of
random memory) for every batch. At live rates a batch holds tens of events, so what a call costs
whatever its size counts per event too. This bench builds that state in one partition's
`LedgerState` (the filters of the earlier days filled with `--ids-per-day` random digests; then
`--minutes` of ingest at `--rate` events per second, in batches of 500, each batch prepared,
sequenced, committed and sealed as the ingest service does, with the warehouse holding every
earlier batch), then times `prepare` of fresh ids in batches of each size of `--sizes`
(`--calls` calls each; CPU time, median of `--runs`):

    python -m bench.dedup_prepare [--sizes 25,100,500,5000] [--runs 5] [--label L]

It writes bench/results/<date>-dedup-prepare[-<label>].json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

T0 = 1_796_000_000_000
DAY_MS = 86_400_000


def build(ids_per_day: int, minutes: float, rate: int) -> Any:
    """A partition's ledger state after a week in bounded mode (see the module)."""
    from pipeline.config import Settings
    from pipeline.event import format_ms
    from pipeline.id_filter import IdFilter
    from pipeline.ledger import LedgerState

    s = Settings.from_env({})
    state = LedgerState(s.dedup_window_days, s.dedup_exact_seconds, s.dedup_filter_mb)
    window = state  # a LedgerState is its dedup window
    today = T0 // DAY_MS
    rng = np.random.default_rng(7)
    for day in range(today - window.buckets, today):
        id_filter = window.filters[day] = IdFilter(window.filter_bits)
        for start in range(0, ids_per_day, 1_000_000):
            n = min(1_000_000, ids_per_day - start)
            id_filter.add_halves(rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64))
    total = int(minutes * 60 * rate)
    offset = 0
    for start in range(0, total, 500):
        at = format_ms(T0 + start * 1000 // rate)
        ids = [(f"A{i % 500:04d}", f"ev-{i:012d}") for i in range(start, min(total, start + 500))]
        digests, _ = window.prepare(ids, at)
        for (account, event_id), digest in zip(ids, digests, strict=True):
            event = {"account_id": account, "event_id": event_id}
            state.sequence(event, at, offset, digest)
            offset += 1
        window.committed(offset, window.close_batch())
        window.seal(offset)
    return state, format_ms(T0 + total * 1000 // rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="25,100,500,5000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ids-per-day", type=int, default=2_000_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1_500)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    from bench.workload import write_results

    started = time.process_time()
    state, now = build(args.ids_per_day, args.minutes, args.rate)
    window = state
    built = time.process_time() - started
    runs = sum(len(r) for r in window.runs.values())
    figures: dict[str, Any] = {
        "filters": len(window.filters),
        "filter_mib": round(window.filter_bits / 8 / 2**20, 1),
        "runs": runs,
        "ids_in_runs": sum(len(run) for r in window.runs.values() for run in r),
        "ids_in_sets": sum(len(ids) for ids in window.exact.values()),
        "build_seconds": round(built, 1),
        "per_batch_us": {},
        "per_event_us": {},
    }
    serial = 0
    for size in [int(x) for x in args.sizes.split(",")]:
        medians = []
        for _ in range(args.runs):
            batches = []
            for _ in range(args.calls):
                batches.append([(f"B{i % 500:04d}", f"new-{serial + i:012d}") for i in range(size)])
                serial += size
            t = time.process_time()
            for ids in batches:
                window.prepare(ids, now)
            medians.append((time.process_time() - t) / args.calls)
        per_batch = statistics.median(medians)
        figures["per_batch_us"][str(size)] = round(per_batch * 1e6, 1)
        figures["per_event_us"][str(size)] = round(per_batch * 1e6 / size, 2)
    lines = [
        f"# The dedup window's `prepare` after a week, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"Command: `python -m bench.dedup_prepare --sizes {args.sizes} --calls {args.calls} --runs"
        f" {args.runs} --ids-per-day {args.ids_per_day} --minutes {args.minutes:g} --rate"
        f" {args.rate}" + (f" --label {args.label}" if args.label else "") + "`; one partition in"
        f" the default bounded mode: {figures['filters']} filters of {figures['filter_mib']} MiB,"
        f" {runs} sorted runs ({figures['ids_in_runs']:,} ids) and {figures['ids_in_sets']:,} ids"
        " in sets; CPU time, median of the runs.",
        "",
        "| batch (events) | µs per call | µs per event |",
        "|---|---|---|",
    ]
    for size, per_batch in figures["per_batch_us"].items():
        lines.append(f"| {int(size):,} | {per_batch:,} | {figures['per_event_us'][size]} |")
    write_results("dedup-prepare", args.label, figures, lines)


if __name__ == "__main__":
    main()
