"""Per-row cost of loading the warehouse, in-process: the old loader path against ClickHouse parsing.

Simulated ledger records (sequenced as ingest does, the bytes the loader reads from pw.ledger) are
stored in batches of `--batch` rows (20,000) into a fresh embedded warehouse per method:

- `store_events` (the loader before issue 16): `checked_entry` per record, then `store_events`: a
  lookup `event_id IN (...)` per batch, `event_row` per row in Python, JSONEachRow text parsed
  by the engine;
- `store_events_no_lookup`: the same rows without the lookup (what the lookup costs);
- `lines` (the loader now): `ledger_line` per record (one JSON decode, a shape check, one
  canonical encoding), the partition marks, then `store_lines`: the engine parses each canonical
  event and derives the columns, reading the strings as Python objects (chDB's `Python()`);
- `arrow`: `checked_entry` and `event_row` per record into columns, a pyarrow Table, inserted with
  `INSERT ... SELECT * FROM Python(table)`;
- `raw` (the loader's fast path since session 25): the partition marks, then `store_raw`: no Python
  per record, the engine splits, checks and parses the raw records (`python` is then only
  building the batch's Arrow column: nothing per record but its bytes).

Per method and batch: the Python CPU of the per-record step (it holds the GIL: in the worker it
competes with ingest and detection), the process CPU of the whole batch (every thread, the
engine's included) and the wall time, per row; the medians over the batches are reported. The
machine's load average is recorded: other processes on a shared machine inflate wall times most.
Nothing is asserted. Results: bench/results/<date>-warehouse.json and .md.

    python -m bench.warehouse_insert --batches 5 --batch 20000 [--methods raw,lines] [--label L]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.config import REPO_ROOT, Settings
from pipeline.event import format_ms, normalize
from pipeline.ledger import LedgerState
from pipeline.simulation.traffic import generate
from sinks.audit_store import (
    checked_entry,
    event_row,
    ledger_line,
    store_events,
    store_lines,
    store_raw,
)
from sinks.clickhouse import EmbeddedWarehouse, migrate
from sinks.loader_offsets import Mark, write_marks

ATTACKS = (
    "ip_outside_allowlist",
    "price_change_over_limit",
    "funds_without_approval",
    "refund_burst",
)


def ledger_batches(batches: int, size: int, seed: int) -> list[list[bytes]]:
    """`batches` lists of `size` ledger records, as the ingest service writes them to pw.ledger
    (`LedgerState.sequence`: the canonical event, then the ledger's fields)."""
    state = LedgerState(7)
    records: list[bytes] = []
    clock = 1_793_599_260_000
    for n, (event, _) in enumerate(
        generate(batches * size * 2, seed=seed, attack_rate=0.01, attack_kinds=ATTACKS)
    ):
        done = state.sequence(normalize(event), format_ms(clock + n), n)
        if done is not None:
            records.append(done[1])
        if len(records) == batches * size:
            break
    return [records[i * size : (i + 1) * size] for i in range(batches)]


class Clock:
    """Python CPU (this thread), process CPU (all threads) and wall time of a block."""

    def __enter__(self) -> Clock:
        self.thread, self.process, self.wall = (
            time.thread_time(),
            time.process_time(),
            time.perf_counter(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread = time.thread_time() - self.thread
        self.process = time.process_time() - self.process
        self.wall = time.perf_counter() - self.wall


def run_old(wh: EmbeddedWarehouse, batch: list[bytes], lookup: bool) -> dict[str, float]:
    with Clock() as prep:
        entries = [checked_entry(raw) for raw in batch]
    with Clock() as store:
        if lookup:
            store_events(wh, entries)
        else:
            wh.insert("audit.events", [event_row(e) for e in entries])
    return {
        "python": prep.thread,
        "process": prep.process + store.process,
        "wall": prep.wall + store.wall,
        "store_process": store.process,
        "store_wall": store.wall,
    }


def run_lines(
    wh: EmbeddedWarehouse, batch: list[bytes], topic: str, offset: int
) -> dict[str, float]:
    with Clock() as prep:
        lines = [ledger_line(raw) for raw in batch]
    with Clock() as store:
        write_marks(wh, topic, {0: Mark(offset, offset + len(batch))})
        store_lines(wh, lines)
    return {
        "python": prep.thread,
        "process": prep.process + store.process,
        "wall": prep.wall + store.wall,
        "store_process": store.process,
        "store_wall": store.wall,
    }


def run_raw(wh: EmbeddedWarehouse, batch: list[bytes], topic: str, offset: int) -> dict[str, float]:
    with Clock() as store:
        write_marks(wh, topic, {0: Mark(offset, offset + len(batch))})
        store_raw(wh, batch)
    return {
        "python": 0.0,
        "process": store.process,
        "wall": store.wall,
        "store_process": store.process,
        "store_wall": store.wall,
    }


def run_arrow(wh: EmbeddedWarehouse, batch: list[bytes]) -> dict[str, float]:
    import pyarrow as pa

    from pipeline.audit_row import EVENT_COLUMNS

    with Clock() as prep:
        columns: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMNS}
        for raw in batch:
            row = event_row(checked_entry(raw))
            for name, values in columns.items():
                values.append(row[name])
        pw_arrow_table = pa.table(columns)  # noqa: F841  # read by name by chDB's Python()
    with Clock() as store:
        wh._session.query("INSERT INTO audit.events SELECT * FROM Python(pw_arrow_table)", "CSV")
    return {
        "python": prep.thread,
        "process": prep.process + store.process,
        "wall": prep.wall + store.wall,
        "store_process": store.process,
        "store_wall": store.wall,
    }


def measure(
    name: str,
    batches: list[list[bytes]],
    work: Callable[[EmbeddedWarehouse, list[bytes], int], dict[str, float]],
) -> dict[str, Any]:
    samples = []
    with tempfile.TemporaryDirectory(prefix=f"pw-bench-{name}-") as tmp:
        wh = EmbeddedWarehouse(Path(tmp) / "warehouse")
        try:
            migrate(wh, Settings.from_env({}))
            work(
                wh, batches[0][:100], 0
            )  # warm-up: first-call costs (e.g. Python() set-up), not counted
            wh.execute("TRUNCATE TABLE audit.events")
            offset = 100
            for batch in batches:
                gc.collect()
                samples.append(work(wh, batch, offset))
                offset += len(batch)
            stored = int(wh.query("SELECT count() FROM audit.events").rows[0][0])
        finally:
            wh.close()
    rows = len(batches[0])
    out: dict[str, Any] = {"batches": len(batches), "rows_per_batch": rows, "rows_stored": stored}
    for key in ("python", "process", "wall", "store_process", "store_wall"):
        out[f"{key}_us_per_row"] = round(statistics.median(s[key] for s in samples) * 1e6 / rows, 2)
    return out


def lookup_cost(batches: list[list[bytes]]) -> dict[str, float]:
    """The old per-batch lookup alone, against a table already holding the earlier batches."""
    times = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-lookup-") as tmp:
        wh = EmbeddedWarehouse(Path(tmp) / "warehouse")
        try:
            migrate(wh, Settings.from_env({}))
            for batch in batches:
                ids = sorted({orjson.loads(raw)["event_id"] for raw in batch})
                with Clock() as c:
                    wh.query(
                        "SELECT account_id, seq FROM audit.events WHERE event_id IN {ids:Array(String)}",
                        {"ids": ids},
                    )
                times.append(c)
                store_lines(wh, [ledger_line(raw) for raw in batch])
            with Clock() as marks:
                write_marks(wh, "pw.ledger", {p: Mark(0, 1) for p in range(4)})
        finally:
            wh.close()
    rows = len(batches[0])
    return {
        "lookup_wall_ms_per_batch_last": round(times[-1].wall * 1000, 1),
        "lookup_process_us_per_row_median": round(
            statistics.median(t.process for t in times) * 1e6 / rows, 2
        ),
        "marks_write_wall_ms": round(marks.wall * 1000, 1),
    }


def markdown(figures: dict[str, Any]) -> str:
    out = [
        f"# Warehouse insert, {figures['date']}",
        "",
        f"`python -m bench.warehouse_insert --batches {figures['batches']} --batch {figures['batch']} "
        f"--methods {','.join(figures['methods'])}` on "
        f"{figures['machine']} ({figures['cpus']} CPUs), load average {figures['load_before']} before, "
        f"{figures['load_after']} after (a shared machine: wall times carry the others' load).",
        "",
        "Per row, medians over the batches. *Python* is the per-record step in this thread (it holds",
        "the GIL); *process* counts every thread, the engine's included; *store* is the insert call.",
        "",
        "| method | Python CPU µs/row | process CPU µs/row | wall µs/row | store CPU µs/row | store wall µs/row |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in figures["methods"].items():
        out.append(
            f"| `{name}` | {m['python_us_per_row']} | {m['process_us_per_row']} | {m['wall_us_per_row']} "
            f"| {m['store_process_us_per_row']} | {m['store_wall_us_per_row']} |"
        )
    lookup = figures["lookup"]
    if lookup is None:
        return "\n".join([*out, ""])
    out += [
        "",
        f"The old per-batch lookup (`event_id IN` {figures['batch']:,} ids): {lookup['lookup_process_us_per_row_median']} µs "
        f"of CPU per row, {lookup['lookup_wall_ms_per_batch_last']} ms for the last batch (table of "
        f"{figures['batch'] * (figures['batches'] - 1):,} rows; it grows with the table). The loader now writes one small "
        f"row per partition and batch to audit.loader_offsets instead: {lookup['marks_write_wall_ms']} ms.",
        "",
    ]
    return "\n".join(out)


#: Each method's work on one batch (warehouse, records, the batch's first offset).
METHODS: dict[str, Callable[[EmbeddedWarehouse, list[bytes], int], dict[str, float]]] = {
    "store_events": lambda wh, b, _o: run_old(wh, b, lookup=True),
    "store_events_no_lookup": lambda wh, b, _o: run_old(wh, b, lookup=False),
    "lines": lambda wh, b, o: run_lines(wh, b, "pw.ledger", o),
    "arrow": lambda wh, b, _o: run_arrow(wh, b),
    "raw": lambda wh, b, o: run_raw(wh, b, "pw.ledger", o),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, of: {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument("--label", default="", help="appended to the result files' names")
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    batches = ledger_batches(args.batches, args.batch, args.seed)
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)} (known: {', '.join(METHODS)})")
    methods = {name: measure(name, batches, METHODS[name]) for name in chosen}
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "batches": args.batches,
        "batch": args.batch,
        "methods": methods,
        "lookup": lookup_cost(batches) if "store_events" in methods else None,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"{figures['date']}-warehouse" + (f"-{args.label}" if args.label else ""))
    stem.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
