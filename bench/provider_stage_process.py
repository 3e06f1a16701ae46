"""CPU per event of the provider stage as a process of its own (`partnerwatch provider-stage`),
on the broker.

bench/provider_stage_costs.py measures the stage's loop in-process without Kafka; this one runs
the real command and charges it everything: the ledger consumer (fetch, record batches,
read_committed), parsing, the merge, the rules, alert publishing, checkpoints, metrics and the
event loop's wakeups.

Per run, a fresh namespace (its own topics and groups): the ledger the ingest service writes
for `--count` events of the benchmark's mix (bench/provider_stage_costs.py `ledger`: validated,
masked and sequenced by the ingest service's own functions, the real ledger records) is produced
to the namespace's ledger topic in Kafka transactions of `--transaction` records per partition,
uncompressed, as the ingest service writes it. Then `python -m partnerwatch provider-stage` starts
on it, with the worker's settings (bench/workload.py `WORKER_ENV`), and works through the backlog:
- `µs per event`: the process's CPU (/proc, user + system, every thread) from its first folded
  event until every event is folded, over the events folded in between (start-up, imports and
  the take-over are not counted);
- `idle`: the process's CPU per second over `--idle` seconds after it has folded everything
  (polling with nothing to read);
- the alerts it published, read back from the alerts topic: their count and a digest of their
  bytes in each partition's order, which must be the same for every run and every checkout.

With `--before DIR` (a checkout of earlier code, e.g. a `git worktree` of main), each run also
runs the command from that checkout, interleaved with this one (before, after, before, ...), on
the same ledger records; the report puts the two side by side. Results go to
bench/results/<date>-provider-stage-process[-<label>].json and .md.

    python -m bench.provider_stage_process [--count 100000] [--runs 5] [--before DIR] [--label L]
        [--py-spy stacks.txt] [--live]

With `--live`, the stage folds the ledger while one worker (this checkout, PW_PROVIDER_STAGE=off)
ingests `--count` events of the mix: its CPU per event from 10 % to 90 % of the events folded,
at the worker's rate (small fetches, more wakeups per event); no alert digest (the worker's
own alerts share the topic).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.procstats import cpu_seconds, metric
from bench.provider_stage_costs import Record, ledger
from bench.workload import WORKER_ENV, write_results
from partnerwatch.local_worker import CREATED, Namespace, delete_namespace_topics, free_port
from sinks.kafka_io import ensure_topics

#: Seconds the stage may take to start and fold everything before a run is given up.
TIMEOUT = 180.0


async def produce_ledger(ns: Namespace, parts: dict[int, list[Record]], per: int) -> None:
    """The ledger records to the namespace's ledger topic, in transactions of `per` records per
    partition, round robin over the partitions (as ingest's partitions commit side by side)."""
    from sinks.kafka_io import aio_batch_producer

    s = ns.settings
    producer = aio_batch_producer(
        s, role="bench-ledger", transactional_id=f"{s.app_id}-bench-ledger"
    )
    await producer.start()
    try:
        longest = max(len(r) for r in parts.values())
        for start in range(0, longest, per):
            for p, records in sorted(parts.items()):
                chunk = records[start : start + per]
                if not chunk:
                    continue
                async with producer.transaction():
                    for record in chunk:
                        await producer.send(
                            s.ledger_topic, record.value, key=record.key, partition=p
                        )
    finally:
        await producer.stop()


def alerts_digest(ns: Namespace) -> tuple[int, str]:
    """The alerts topic read back: how many, and a digest of each partition's values in order."""
    from kafka import TopicPartition

    from sinks.kafka_io import consumer as kafka_consumer

    s = ns.settings
    reader = kafka_consumer(s, role="bench-alerts")
    try:
        tps = [TopicPartition(s.alerts_topic, p) for p in range(s.topic_partitions)]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = reader.end_offsets(tps)
        values: dict[int, list[bytes]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 60
        while any(reader.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, records in reader.poll(timeout_ms=500, max_records=10_000).items():
                values[tp.partition].extend(r.value for r in records)
    finally:
        reader.close()
    out = hashlib.sha256()
    for p in sorted(values):
        out.update(f"|{p}|".encode())
        for value in values[p]:
            out.update(value)
    return sum(len(v) for v in values.values()), out.hexdigest()


def py_spy(output: Path | None, pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy over `pid` into `output` (collapsed stacks, native frames too), or None."""
    if output is None:
        return None
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            *("record", "--native", "--rate", "250", "--format", "raw"),
            *("--output", str(output), "--pid", str(pid)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_stage(
    root: Path, ns: Namespace, checkout: Path, port: int
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """`partnerwatch provider-stage` from `checkout` in `ns`, metrics on `port`; its log file
    (the caller closes it)."""
    log = open(root / f"stage-{ns.name}.log", "ab")  # noqa: SIM115 (the caller closes it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "partnerwatch", "provider-stage", "--metrics-port", str(port)],
        env={**ns.env, "PYTHONPATH": str(checkout)},
        cwd=checkout,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log


def stop_stage(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Stop a stage `start_stage` started (SIGTERM; SIGKILL if it has not ended in 60 s), and
    close its log."""
    try:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    finally:
        log.close()


def one_run(
    checkout: Path,
    root: Path,
    parts: dict[int, list[Record]],
    per: int,
    idle: float,
    spy: Path | None = None,
) -> dict[str, Any]:
    """Produce the ledger to a fresh namespace, run the stage from `checkout` over it."""
    ns = Namespace(root, extra_env={**WORKER_ENV, "PW_PROVIDER_STAGE": "off"})
    ensure_topics(ns.settings)
    asyncio.run(produce_ledger(ns, parts, per))
    count = sum(len(r) for r in parts.values())
    port = free_port()
    proc, log = start_stage(root, ns, checkout, port)
    name = "pw_provider_stage_events_total"
    try:
        deadline = time.monotonic() + TIMEOUT
        folded = 0.0
        while folded <= 0:  # the first folded events: from here on the stage is working
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stage did not start folding (see {log.name})")
            try:
                folded = metric(port, name)
            except OSError:
                folded = 0.0
            if folded <= 0:
                time.sleep(0.02)
        cpu0, first = cpu_seconds(proc.pid), folded
        sampler = py_spy(spy, proc.pid)
        started = time.monotonic()
        while folded < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stage stopped at {folded:.0f} of {count} (see {log.name})")
            time.sleep(0.25)  # a scrape costs the stage CPU too: not too often
            folded = metric(port, name)
        cpu1 = cpu_seconds(proc.pid)
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(60)
        wall = time.monotonic() - started
        time.sleep(1.0)  # the last checkpoint and alerts
        idle0 = cpu_seconds(proc.pid)
        time.sleep(idle)
        idle_cores = (cpu_seconds(proc.pid) - idle0) / idle
    finally:
        stop_stage(proc, log)
    events = count - first
    alerts, digest = alerts_digest(ns)
    delete_namespace_topics(ns.settings, [ns.name])
    return {
        "events": events,
        "us_per_event": (cpu1 - cpu0) / events * 1e6,
        "events_per_s": events / wall,
        "idle_cores": idle_cores,
        "alerts": alerts,
        "alerts_digest": digest,
    }


def live_run(
    checkout: Path,
    root: Path,
    messages: list[tuple[bytes, bytes]],
    share: float,
    spy: Path | None = None,
) -> dict[str, Any]:
    """`--live`: the events to a fresh namespace's actions topic, a worker of this checkout with
    PW_PROVIDER_STAGE=off ingesting them and the stage from `checkout` folding its ledger as it
    is written; the stage's CPU per event between `share` and `1 - share` of the events folded."""
    from bench.workload import produce
    from partnerwatch.local_worker import Worker

    ns = Namespace(root, extra_env={**WORKER_ENV, "PW_PROVIDER_STAGE": "off"})
    produce(ns, messages)
    count = len(messages)
    port = free_port()
    proc, log = start_stage(root, ns, checkout, port)
    worker = Worker(ns)
    name = "pw_provider_stage_events_total"
    marks: list[tuple[float, float, float]] = []  # (folded, cpu, time)
    sampler = None
    try:
        worker.start()
        deadline = time.monotonic() + TIMEOUT
        for goal in (share * count, (1 - share) * count):
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the stage stopped short of {goal:.0f} (see {log.name})")
                try:
                    folded = metric(port, name)
                except OSError:
                    folded = 0.0
                if folded >= goal:
                    marks.append((folded, cpu_seconds(proc.pid), time.monotonic()))
                    if sampler is None:
                        sampler = py_spy(spy, proc.pid)
                    else:
                        sampler.send_signal(signal.SIGINT)
                        sampler.wait(60)
                    break
                time.sleep(0.25)
    finally:
        worker.stop()
        stop_stage(proc, log)
    delete_namespace_topics(ns.settings, [ns.name])
    (e0, c0, t0), (e1, c1, t1) = marks
    return {
        "events": e1 - e0,
        "us_per_event": (c1 - c0) / (e1 - e0) * 1e6,
        "events_per_s": (e1 - e0) / (t1 - t0),
        "idle_cores": 0.0,
        "alerts": 0,
        "alerts_digest": "",
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    digests = {r["alerts_digest"] for r in runs}
    return {
        "us_per_event": round(statistics.median(r["us_per_event"] for r in runs), 1),
        "us_per_event_runs": [round(r["us_per_event"], 1) for r in runs],
        "events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
        "idle_cores": round(statistics.median(r["idle_cores"] for r in runs), 3),
        "alerts": runs[0]["alerts"],
        "alerts_digest": runs[0]["alerts_digest"] if len(digests) == 1 else sorted(digests),
    }


def table(variants: dict[str, dict[str, Any]], live: bool) -> Iterable[str]:
    names = list(variants)
    yield "| | " + " | ".join(names) + " |"
    yield "|---" * (len(names) + 1) + "|"
    rows = [
        ("CPU µs per event (process)", "us_per_event"),
        ("runs", "us_per_event_runs"),
        ("events/s folded" + (" (live)" if live else " (backlog)"), "events_per_s"),
    ]
    if not live:
        rows += [("idle, cores", "idle_cores"), ("alert versions published", "alerts")]
    for title, key in rows:
        yield f"| {title} | " + " | ".join(str(variants[n][key]) for n in names) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--transaction", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--before", help="a checkout of earlier code, run interleaved")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--live",
        action="store_true",
        help="fold the ledger as a worker (PW_PROVIDER_STAGE=off) writes it, not a backlog",
    )
    parser.add_argument(
        "--py-spy",
        help="record the last run of this checkout with py-spy (raw stacks) to this file",
    )
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts = {"now": here}
    if args.before:
        checkouts = {"before": Path(args.before).resolve(), "now": here}
    if args.live:
        from bench.workload import stream

        messages = stream(args.count)
        parts = {}
    else:
        parts = ledger(args.count, args.partitions)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="pw-stage-proc-") as tmp:
        try:
            for i in range(args.runs):
                for name, checkout in checkouts.items():
                    last = i == args.runs - 1 and name == "now"
                    spy = Path(args.py_spy) if args.py_spy and last else None
                    run = (
                        live_run(checkout, Path(tmp), messages, 0.1, spy)
                        if args.live
                        else one_run(checkout, Path(tmp), parts, args.transaction, args.idle, spy)
                    )
                    runs[name].append(run)
                    print(
                        f"run {i + 1} {name}: {run['us_per_event']:.1f} µs per event,"
                        f" {run['events_per_s']:,.0f} events/s, idle {run['idle_cores']:.3f}"
                        f" cores, {run['alerts']} alerts {run['alerts_digest'][:12]}",
                        flush=True,
                    )
        finally:
            from pipeline.config import Settings

            delete_namespace_topics(Settings.from_env(dict(os.environ)), CREATED)
    variants = {name: summary(r) for name, r in runs.items()}
    same = len({str(v["alerts_digest"]) for v in variants.values()}) == 1
    command = (
        f"python -m bench.provider_stage_process --count {args.count} --runs {args.runs}"
        + (" --live" if args.live else "")
        + (" --before <checkout of the earlier code>" if args.before else "")
    )
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "events": args.count,
        "live": args.live,
        "partitions": args.partitions,
        "transaction": args.transaction,
        "variants": variants,
        "alerts_same": same,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }
    lines = [
        f"# CPU per event of `partnerwatch provider-stage` (its own process), {figures['measured_at']}",
        "",
        f"Command: `{command}`; median of {args.runs} runs"
        + (", before and now interleaved" if args.before else "")
        + (
            f"; {args.count:,} events of the mix ingested by one worker (PW_PROVIDER_STAGE=off)"
            " while the stage folds its ledger."
            if args.live
            else f"; a backlog of {args.count:,} ledger events over {args.partitions} partitions"
            f" (transactions of {args.transaction} records). Alerts published: "
            + ("the same in every run (digest)." if same else "NOT the same in every run.")
        ),
        "",
        *table(variants, args.live),
        "",
        (
            "CPU of the whole process (every thread, user + system) from 10 % to 90 % of the"
            " events folded, per event folded; events/s: the stage's folding rate meanwhile"
            " (the worker's ingest rate)."
            if args.live
            else "CPU of the whole process (every thread, user + system) from its first folded"
            " event to its last, per event folded; `idle`: cores used once everything is folded."
        ),
        "",
    ]
    write_results("provider-stage-process", args.label, figures, lines)


if __name__ == "__main__":
    main()
