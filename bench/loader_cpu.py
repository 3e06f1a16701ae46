"""CPU per row of the real warehouse loader, on a ledger topic filled beforehand.

The ledger topic of a fresh namespace on the local broker is filled once with `--rows` ledger
records, sequenced and encoded as the ingest service writes them (`LedgerState.sequence`: the
simulator's mix, keyed by account). Then, `--runs` times, a `WarehouseLoader` (the thread the worker
runs with `PW_WAREHOUSE_LOADER=inprocess`) loads all of it into a fresh embedded warehouse, with a
consumer group of its own, and the CPU time of each thread of this process is read from /proc
from the start of the loader to the last row stored:

- *loader thread*: the loader's event loop (Kafka fetches, aiokafka's record objects, the
  per-record step, the batch bookkeeping); pure Python: it holds the GIL;
- *executor threads*: the loop's executor, which runs each batch's write (the marks, the insert
  call, whose engine work runs with the GIL released, partly on this thread);
- *engine threads*: chDB's own threads (parsing, merging, writing parts), off the GIL except where
  the engine reads Python objects;
- *process*: all of it, threads that came and went included.

With `--probe`, a thread of this process spins a counter during the load, standing for the ingest
loop that wants the interpreter; from its wall time, its CPU time and its run-queue delay
(/proc/thread-self/schedstat) the time it waited for the GIL is derived: what the loader took from
it, per row. The machine's other load shows in run-queue delays, not in this figure.

The collector runs with `partnerwatch loader`'s thresholds (streams/collector.py), the heap
frozen at the start, before the ledger is filled (the loader process freezes its heap once its
warehouse is open: the same objects less those of the filling and the warehouse);
`--collector default`: Python's own settings, as the loader process had them until session 37.

Medians over the runs; nothing is asserted. Results: bench/results/<date>-loader-cpu[-<label>].

    python -m bench.loader_cpu --rows 200000 --runs 5 [--probe] [--collector default] [--label before]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.procstats import CLK_TCK, schedstat
from bench.workload import write_results
from partnerwatch.local_worker import CREATED, Namespace, delete_namespace_topics
from pipeline.config import Settings
from pipeline.event import format_ms, normalize
from pipeline.ledger import LedgerState
from pipeline.simulation.traffic import generate
from sinks.kafka_io import aio_producer, ensure_topics
from sinks.loader_offsets import Mark, write_marks
from streams.collector import settle
from streams.warehouse_loader import WarehouseLoader


def fill_ledger(ns: Namespace, rows: int, seed: int) -> int:
    """Produce `rows` ledger records to the namespace's ledger topic; return the bytes sent."""
    settings = ns.settings
    ensure_topics(settings)
    state = LedgerState(7)
    clock = 1_793_599_260_000
    records: list[tuple[bytes, bytes]] = []
    for n, (event, _) in enumerate(generate(rows * 2, seed=seed, attack_rate=0.001)):
        sequenced = state.sequence(normalize(event), format_ms(clock + n), n)
        if sequenced is not None:
            records.append((event["account_id"].encode(), sequenced[1]))
        if len(records) == rows:
            break

    async def send() -> None:
        producer = aio_producer(
            settings, role="bench", linger_ms=20, max_batch_size=512 * 1024, acks="all"
        )
        await producer.start()
        try:
            for i in range(0, len(records), 5_000):
                sent = [
                    await producer.send(settings.ledger_topic, key=key, value=value)
                    for key, value in records[i : i + 5_000]
                ]
                await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send())
    return sum(len(value) for _, value in records)


def task_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process, by thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class Probe(threading.Thread):
    """Spins a counter; `waited` is the wall time it was neither running nor runnable: waiting
    for the GIL (it never blocks otherwise)."""

    def __init__(self) -> None:
        super().__init__(name="probe", daemon=True)
        self.stop = threading.Event()
        self.count = 0
        self.waited = 0.0
        self.wall = 0.0

    def run(self) -> None:
        cpu0, delay0 = schedstat("/proc/thread-self/schedstat")
        wall0 = time.perf_counter()
        stopped = self.stop.is_set
        n = 0
        while not stopped():
            for _ in range(1000):
                n += 1
        self.wall = time.perf_counter() - wall0
        cpu1, delay1 = schedstat("/proc/thread-self/schedstat")
        self.count = n
        self.waited = max(0.0, self.wall - (cpu1 - cpu0) - (delay1 - delay0))


def one_run(ns: Namespace, rows: int, run: int, probe: bool) -> dict[str, float]:
    env = dict(ns.env)
    env["PW_APP_ID"] = f"pw-bench-{ns.name}-{run}"  # a consumer group of its own
    env["PW_DATA_DIR"] = str(ns.root / f"run-{run}")
    settings = Settings.from_env(env)
    loader = WarehouseLoader(settings)
    # A warehouse that has loaded before (marks at offset 0): the steady state, where no record of
    # the batch is looked up in audit.events (a warehouse without marks checks its first batch).
    write_marks(
        loader.warehouse,
        settings.ledger_topic,
        {p: Mark(0, 0) for p in range(settings.topic_partitions)},
    )
    spinner = Probe() if probe else None
    before = task_cpu()
    process0 = time.process_time()
    wall0 = time.perf_counter()
    if spinner:
        spinner.start()
    loader.start()
    tid = loader._thread.native_id or 0
    deadline = time.monotonic() + 600
    while loader.stored_events < rows:
        if time.monotonic() > deadline or not loader.alive():
            raise RuntimeError(f"stored {loader.stored_events} of {rows}")
        time.sleep(0.02)
    wall = time.perf_counter() - wall0
    after = task_cpu()
    process = time.process_time() - process0
    python_threads = {t.native_id for t in threading.enumerate() if t.native_id}
    if spinner:
        spinner.stop.set()
        spinner.join()
    loader.stop()
    loader.warehouse.close()
    main = threading.main_thread().native_id
    spent = {t: after[t] - before.get(t, 0.0) for t in after}
    probe_id = (spinner.native_id or 0) if spinner else 0
    executor = sum(
        v for t, v in spent.items() if t in python_threads and t not in (tid, main, probe_id)
    )
    engine = sum(v for t, v in spent.items() if t not in python_threads)
    probe_cpu = spent.get(probe_id, 0.0)
    us = 1e6 / rows
    out = {
        "loader_thread_us_per_row": spent.get(tid, 0.0) * us,
        "executor_us_per_row": executor * us,
        "python_threads_us_per_row": (spent.get(tid, 0.0) + executor) * us,
        "engine_threads_us_per_row": engine * us,
        "process_us_per_row": (process - probe_cpu) * us,
        "wall_s": wall,
        "rows_per_s": rows / wall,
    }
    if spinner:
        out["gil_taken_us_per_row"] = spinner.waited * us
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--probe", action="store_true", help="measure the GIL the loader takes")
    parser.add_argument(
        "--collector",
        choices=("process", "default"),
        default="process",
        help="process: `partnerwatch loader`'s thresholds (streams/collector.py), the heap "
        "frozen at the start; default: Python's settings",
    )
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    if args.collector == "process":
        settle()

    load_before = [round(x, 2) for x in os.getloadavg()]
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-loader-") as tmp:
        ns = Namespace(Path(tmp), extra_env={"PW_LOG_LEVEL": "warning"})
        try:
            size = fill_ledger(ns, args.rows, args.seed)
            for run in range(args.runs):
                samples.append(one_run(ns, args.rows, run, args.probe))
                print(f"run {run}: " + ", ".join(f"{k} {v:.2f}" for k, v in samples[-1].items()))
        finally:
            delete_namespace_topics(ns.settings, [ns.name])
            CREATED.remove(ns.name)
    medians = {k: round(statistics.median(s[k] for s in samples), 2) for k in samples[0]}
    settings = ns.settings
    figures: dict[str, Any] = {
        "rows": args.rows,
        "runs": args.runs,
        "record_bytes_mean": round(size / args.rows, 1),
        "batch_rows": settings.warehouse_batch_rows,
        "partitions": settings.topic_partitions,
        "probe": args.probe,
        "collector": args.collector,
        "medians": medians,
        "samples": samples,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    lines = [
        f"# Warehouse loader CPU per row{f' ({args.label})' if args.label else ''}",
        "",
        f"`python -m bench.loader_cpu --rows {args.rows} --runs {args.runs}"
        f"{' --probe' if args.probe else ''} --collector {args.collector}`: the real loader on a pre-filled ledger topic "
        f"({args.rows:,} records of {figures['record_bytes_mean']} bytes on average, "
        f"{settings.topic_partitions} partitions, batches of {settings.warehouse_batch_rows:,}), "
        f"a fresh embedded warehouse per run; load average {load_before} before, "
        f"{figures['load_after']} after.",
        "",
        "| per row, median of the runs | µs |",
        "|---|---:|",
    ]
    for key, value in medians.items():
        lines.append(f"| {key} | {value} |")
    lines.append("")
    write_results("loader-cpu", args.label, figures, lines)


if __name__ == "__main__":
    main()
