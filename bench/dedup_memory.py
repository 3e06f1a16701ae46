"""Memory and CPU of the dedup window, exact and bounded (pipeline/dedup_window.py), in-process.

Sequences `--count` synthetic ids, 5,000 a batch, `--rate` per second of ingest time, through
`LedgerState` in exact mode and in bounded mode (the warehouse holding everything up to the
previous batch, so the exact tier seals as soon as it may; no repeat is sent, so no confirmation
query is needed and `prepare` measures the filters' cost and the exact tier's compaction), and reports for each: the
Python heap the state holds (tracemalloc) at each quarter, CPU per event of sequencing (with the
filter check), and the size and load time of one snapshot (pipeline/ledger_snapshot.py).

    python -m bench.dedup_memory [--count 2000000] [--rate 5000] [--label LABEL]

Results: bench/results/<date>-dedup-memory[-LABEL].json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

from pipeline import ledger_snapshot
from pipeline.config import Settings
from pipeline.event import format_ms
from pipeline.ledger import LedgerState
from pipeline.ledger_snapshot import SnapshotWriter

RESULTS = Path(__file__).resolve().parent / "results"
T0 = 1_796_000_000_000
BATCH = 5_000


def run(count: int, rate: int, bounded: bool, s: Settings) -> dict[str, Any]:
    exact_seconds = s.dedup_exact_seconds if bounded else 0
    filter_mb = s.dedup_filter_mb if bounded else 0
    tracemalloc.start()
    state = LedgerState(s.dedup_window_days, exact_seconds, filter_mb)
    quarters: list[float] = []
    cpu = 0.0
    for start in range(0, count, BATCH):
        ids = [(f"A{i % 500:04d}", f"ev-{i:012d}") for i in range(start, min(count, start + BATCH))]
        now = format_ms(T0 + start * 1000 // rate)
        began = time.process_time()
        digests, suspects = state.prepare(ids, now)
        assert not suspects or bounded
        for n, (account, event_id) in enumerate(ids):
            ms = T0 + (start + n) * 1000 // rate
            state.sequence(
                {"account_id": account, "event_id": event_id, "x": 1},
                format_ms(ms),
                start + n,
                digests[n],
            )
        state.committed(start + len(ids))
        state.seal(start)  # the warehouse holds the ledger up to the previous batch
        cpu += time.process_time() - began
        done = start + len(ids)
        if done * 4 // count > (done - len(ids)) * 4 // count:
            quarters.append(tracemalloc.get_traced_memory()[0] / 2**20)
    began = time.perf_counter()
    records = SnapshotWriter().records(state)
    snapshot_seconds = time.perf_counter() - began
    size = sum(len(k or b"") + len(v or b"") for k, v in records)
    began = time.perf_counter()
    loaded = ledger_snapshot.load(records, s.dedup_window_days, exact_seconds, filter_mb)
    load_seconds = time.perf_counter() - began
    assert loaded is not None and loaded[0].heads == state.heads
    tracemalloc.stop()
    fp = max((f.false_positive_rate() for f in state.filters.values()), default=0.0)
    return {
        "mode": "bounded" if bounded else "exact",
        "heap_mib_at_quarters": [round(q, 1) for q in quarters],
        "sequence_us_per_event": round(cpu / count * 1e6, 2),
        "exact_ids": state.seen_count(),
        "filter_ids": state.filter_count(),
        "filter_false_positive_rate": round(fp, 5),
        "snapshot_mib": round(size / 2**20, 2),
        "snapshot_records": len(records),
        "snapshot_write_seconds": round(snapshot_seconds, 3),
        "snapshot_load_seconds": round(load_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2_000_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--label", default="", help="a suffix for the result files")
    args = parser.parse_args()
    s = Settings.from_env({})
    results = {
        "date": date.today().isoformat(),
        "count": args.count,
        "rate_per_second": args.rate,
        "settings": {
            "dedup_window_days": s.dedup_window_days,
            "dedup_exact_seconds": s.dedup_exact_seconds,
            "dedup_filter_mb": s.dedup_filter_mb,
        },
        "runs": [run(args.count, args.rate, False, s), run(args.count, args.rate, True, s)],
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{results['date']}-dedup-memory{'-' + args.label if args.label else ''}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Dedup window memory, {args.count:,} ids at {args.rate:,}/s of ingest time",
        "",
        "Command: `python -m bench.dedup_memory "
        f"--count {args.count} --rate {args.rate}"
        f"{' --label ' + args.label if args.label else ''}` (in-process, one partition, defaults: "
        f"window {s.dedup_window_days} days, exact {s.dedup_exact_seconds} s, filters "
        f"{s.dedup_filter_mb} MiB)",
        "",
        "| mode | heap MiB at 25/50/75/100 % | µs per event | exact ids | filter ids | filter FP rate | snapshot MiB (records) | snapshot write / load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['mode']} | {' / '.join(str(q) for q in r['heap_mib_at_quarters'])} |"
            f" {r['sequence_us_per_event']} | {r['exact_ids']:,} | {r['filter_ids']:,} |"
            f" {r['filter_false_positive_rate']} | {r['snapshot_mib']} ({r['snapshot_records']}) |"
            f" {r['snapshot_write_seconds']} / {r['snapshot_load_seconds']} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
