"""The embedded warehouse's CPU and memory for loading ledger records, by `audit.events`' part format.

`min_bytes_for_wide_part` decides whether ClickHouse writes a new part (an insert, or a merge's
result) wide, two files per column and per skip index (104 files for `audit.events`), or compact,
every column in one file (14). Its default is 10 MiB of uncompressed data; the loader's batches of
20,000 events are about 17 MiB. Migration 0010 sets it to 32 MiB.

For each value given, in a process of its own (in the order given, `--rounds` times): a fresh
embedded warehouse, migrated, the table setting set; `--records` simulated ledger records (the
bytes the loader reads from pw.ledger, `bench.warehouse_insert.ledger_batches`) stored in batches
of `--batch` with `store_raw` (the loader's fast path) while the engine merges as it likes; then
`OPTIMIZE TABLE audit.events FINAL`, so that every run ends with the same merged table and the
merge work each format left undone is counted. Reported per run: the process's CPU per row for the
inserts (the merges that ran meanwhile included) and to the end, the wall time of the inserts, the
parts left after the inserts, and the process's peak RSS above its RSS before the first insert,
over the inserts and over the final merge: the records are read into memory first, then the peak
(VmHWM) is reset (`/proc/self/clear_refs`) and read after the inserts and after the final merge.
Nothing is asserted.

    python -m bench.warehouse_parts --records 1000000 --rounds 2 --sizes 10485760,33554432,134217728

Results: bench/results/<date>-warehouse-parts[-<label>].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procstats import rss_mib
from bench.warehouse_insert import ledger_batches
from bench.workload import interpreter, write_results

#: ClickHouse's default `min_bytes_for_wide_part`, migration 0010's, and 128 MiB.
DEFAULT_SIZES = (10_485_760, 33_554_432, 134_217_728)


def _write_records(path: Path, records: int, seed: int) -> None:
    with path.open("wb") as out:
        for batch in ledger_batches(1, records, seed):
            for record in batch:
                out.write(struct.pack("<I", len(record)))
                out.write(record)


def _read_records(path: Path) -> list[bytes]:
    records = []
    with path.open("rb") as source:
        while header := source.read(4):
            (size,) = struct.unpack("<I", header)
            records.append(source.read(size))
    return records


def _reset_peak() -> None:
    """Start VmHWM over from the RSS now (Linux: 5 to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def one_run(records_path: Path, size: int, batch: int) -> dict[str, Any]:
    """One fresh warehouse loaded with the records at `min_bytes_for_wide_part = size` (this
    process's figures: run it in a process of its own)."""
    from pipeline.config import Settings
    from sinks.audit_store import store_raw
    from sinks.clickhouse import EmbeddedWarehouse, migrate

    records = _read_records(records_path)
    with tempfile.TemporaryDirectory(prefix="pw-parts-") as folder:
        wh = EmbeddedWarehouse(Path(folder) / "warehouse")
        try:
            migrate(wh, Settings.from_env({}))
            wh.execute(f"ALTER TABLE audit.events MODIFY SETTING min_bytes_for_wide_part = {size}")
            _reset_peak()
            rss_before = rss_mib(os.getpid())
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for start in range(0, len(records), batch):
                store_raw(wh, records[start : start + batch])
            cpu1, wall1 = time.process_time(), time.perf_counter()
            inserts_peak = rss_mib(os.getpid(), "VmHWM")
            parts = wh.query(
                "SELECT part_type, count(), sum(rows) FROM system.parts "
                "WHERE active AND database = 'audit' AND table = 'events' GROUP BY part_type"
            ).rows
            wh.execute("OPTIMIZE TABLE audit.events FINAL")
            cpu2 = time.process_time()
        finally:
            wh.close()
    rows = len(records)
    return {
        "min_bytes_for_wide_part": size,
        "insert_cpu_us_per_row": round((cpu1 - cpu0) / rows * 1e6, 2),
        "to_merged_cpu_us_per_row": round((cpu2 - cpu0) / rows * 1e6, 2),
        "insert_wall_s": round(wall1 - wall0, 2),
        "parts_after_inserts": {str(kind): [int(n), int(r)] for kind, n, r in parts},
        "peak_rss_above_start_mib": round(inserts_peak - rss_before, 1),
        "peak_rss_above_start_with_final_merge_mib": round(
            rss_mib(os.getpid(), "VmHWM") - rss_before, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label", default="")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one run
    parser.add_argument("--records-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.records_file, args.one, args.batch)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pw-parts-records-") as folder:
        path = Path(folder) / "records"
        _write_records(path, args.records, args.seed)
        for round_ in range(args.rounds):
            # each round in the other order: a drift of the machine's speed falls on both ends
            for size in sizes if round_ % 2 == 0 else sizes[::-1]:
                child = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.warehouse_parts",
                        "--one",
                        str(size),
                        "--records-file",
                        str(path),
                        "--batch",
                        str(args.batch),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=os.environ,
                )
                run = json.loads(child.stdout.strip().splitlines()[-1])
                runs.append(run)
                print(run, flush=True)
    medians = {
        size: {
            key: round(
                statistics.median(r[key] for r in runs if r["min_bytes_for_wide_part"] == size), 2
            )
            for key in (
                "insert_cpu_us_per_row",
                "to_merged_cpu_us_per_row",
                "insert_wall_s",
                "peak_rss_above_start_mib",
                "peak_rss_above_start_with_final_merge_mib",
            )
        }
        for size in sizes
    }
    command = (
        f"python -m bench.warehouse_parts --records {args.records} --batch {args.batch} "
        f"--rounds {args.rounds} --sizes {args.sizes}"
    )
    lines = [
        "# Loading the embedded warehouse by part format"
        + (f" ({args.label})" if args.label else ""),
        "",
        f"`{command}`: {args.records:,} simulated ledger records in batches of {args.batch:,} "
        "(`store_raw`), a fresh warehouse per run, each run a process of its own, then "
        "`OPTIMIZE TABLE audit.events FINAL`; medians of "
        f"{args.rounds} runs per value; {interpreter()}.",
        "",
        "| min_bytes_for_wide_part | inserts, CPU µs per row | to merged, CPU µs per row "
        "| inserts, wall s | peak RSS above the start over the inserts, MiB "
        "| and with the final merge, MiB |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {size:,} | {m['insert_cpu_us_per_row']} | {m['to_merged_cpu_us_per_row']} "
            f"| {m['insert_wall_s']} | {m['peak_rss_above_start_mib']} "
            f"| {m['peak_rss_above_start_with_final_merge_mib']} |"
            for size, m in medians.items()
        ),
        "",
        "Runs, in order:",
        "",
        *(f"- {json.dumps(r)}" for r in runs),
        "",
    ]
    figures = {
        "command": command,
        "interpreter": interpreter(),
        "runs": runs,
        "medians": {str(k): v for k, v in medians.items()},
    }
    write_results("warehouse-parts", args.label, figures, lines)


if __name__ == "__main__":
    main()
