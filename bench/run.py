"""`make bench`: the pipeline's throughput, latency, scaling and warehouse figures on the local Kafka.

Five measurements, each in a namespace of its own on the real broker (partnerwatch.local_worker):

1. ceiling: a bare aiokafka consumer (read_committed, no work) reads N pre-produced events;
2. pipeline: one worker (ingest, sequencing, every detector, alerts, warehouse sink) over the
   same N events, already waiting on its actions topic: sustained events/s until the ledger and
   until the warehouse hold them all, the ratio to the ceiling, the worker's CPU and peak RSS
   (and RSS at each quarter of the run: flat once windows are full, or growing);
3. latency: a fresh worker fed at a fixed rate (half the measured maximum), event-to-alert
   latency from the Kafka timestamp of the triggering event's ingest record to the alert record;
4. scaling: two worker processes on the same N events (PW_TOPIC_PARTITIONS partitions);
5. warehouse: insert rows/s (the loader's own insert time) and the active part count after (2);
6. optional stages, each also written to its own <date>-<stage> files: `gateway` (bench/gateway.py,
   the latency the SP-API gateway adds and its calls/s per core) and `notifications`
   (bench/notifications.py, SQS to Kafka ingestion rate); a stage that cannot run is reported
   as skipped. `--only STAGE` runs just that stage, `--skip-gateway`, `--skip-notifications`.

Figures go to bench/results/<date>.json and .md (docs/performance.md links the latest); nothing is
asserted (shared machines are noisy). Default N is 1,000,000; `--count` for shorter runs.

    python -m bench.run [--count N] [--skip-scaling] [--latency-seconds S] [--only gateway|notifications]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.alert_latency import STAGES as STAGE_PLACES
from bench.alert_latency import latency, latency_only
from bench.latency_load import LOADS
from bench.procstats import (
    broker_pid,
    children_of_role,
    children_rss_mib,
    cpu_seconds,
    metric,
    rss_mib,
    tree_cpu_seconds,
)
from bench.recovery import recovery
from bench.stages import OPTIONAL, stage_rows, stages
from bench.workload import RESULTS, WORKER_ENV, StoredStream, interpreter, produce
from partnerwatch.local_worker import CREATED, Namespace, Worker, delete_namespace_topics, free_port
from pipeline.config import Settings
from sinks.kafka_io import KafkaAccessError, aio_consumer
from tools import kafka_crc


async def _drain(settings: Settings, topic: str, partitions: int, count: int) -> float:
    reader = aio_consumer(
        settings,
        role="bench-drain",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await reader.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        seen, started = 0, time.monotonic()
        while seen < count:
            for records in (await reader.getmany(timeout_ms=1000, max_records=50_000)).values():
                seen += len(records)
        return time.monotonic() - started
    finally:
        await reader.stop()


def ceiling(ns: Namespace, count: int) -> dict[str, Any]:
    settings = ns.settings
    seconds = asyncio.run(
        _drain(settings, settings.actions_topic, settings.topic_partitions, count)
    )
    return {
        "events": count,
        "seconds": round(seconds, 3),
        "events_per_second": round(count / seconds),
    }


def _peak_reached(at: dict[str, Any], count: int) -> str:
    if not at:
        return "-"
    stored = at.get("events_stored")
    where = f"{at['events_accepted'] / count:.0%} of the events accepted"
    if stored is not None:
        where += f", {stored / count:.0%} stored"
    return f"{at['seconds']} s into the run, {where} ({at['peak_mib']} MiB)"


def run_pipeline(
    root: Path, messages: StoredStream, workers: int, recover: bool = False
) -> dict[str, Any]:
    """`workers` worker processes over the messages, pre-produced before they start."""
    count = len(messages)
    ns = Namespace(root, extra_env=dict(WORKER_ENV))
    produced = produce(ns, messages)
    procs = [Worker(ns)] + [
        Worker(
            Namespace(
                root,
                name=ns.name,
                port=free_port(),
                extra_env={**WORKER_ENV, "PW_DATA_DIR": str(root / f"{ns.name}-w{i}")},
            )
        )
        for i in range(1, workers)
    ]
    broker = broker_pid()
    broker_cpu0 = cpu_seconds(broker) if broker else 0.0
    for w in procs:
        w.start()
    pids = [w.proc.pid for w in procs if w.proc is not None]
    ports = [w.ns.port for w in procs]
    # the workers' CPU includes their child processes: the provider stage
    # (PW_PROVIDER_STAGE=process) and the warehouse loader (PW_WAREHOUSE_LOADER=process)
    cpu0 = sum(tree_cpu_seconds(p) for p in pids)
    stage_pids = [c for p in pids for c in children_of_role(p, "provider-stage")]
    loader_pids = [c for p in pids for c in children_of_role(p, "loader")]
    started = time.monotonic()
    quarters: list[float] = []
    stage_quarters: list[float] = []  # the provider stage processes' RSS (children read again)
    loader_quarters: list[float] = []  # the warehouse loader processes' RSS, the same way
    sequenced = stored = None
    # when the peak RSS (VmHWM) last rose, and how far the run was then (the quarters miss it)
    high = 0.0
    peak_at: dict[str, Any] = {}
    try:
        while time.monotonic() - started < 3600 and stored is None:
            accepted = sum(metric(p, "pw_events_accepted_total") for p in ports)
            while len(quarters) < 4 and accepted >= count * (len(quarters) + 1) / 4:
                quarters.append(round(sum(rss_mib(p) for p in pids), 1))
                stage_quarters.append(round(sum(children_rss_mib(p) for p in pids), 1))
                loader_quarters.append(round(sum(children_rss_mib(p, "loader") for p in pids), 1))
            if sequenced is None and accepted >= count:
                sequenced = time.monotonic() - started
            rows = None
            if sequenced is not None:
                rows = sum(int(w.ns.scalar("SELECT count() FROM audit.events")) for w in procs)
                if rows >= count:
                    stored = time.monotonic() - started
            hwm = sum(rss_mib(p, "VmHWM") for p in pids)
            if hwm > high + 1:
                high = hwm
                peak_at = {
                    "seconds": round(time.monotonic() - started, 1),
                    "events_accepted": int(accepted),
                    "events_stored": rows,
                    "peak_mib": round(hwm, 1),
                }
            time.sleep(0.25)
        if sequenced is None or stored is None:
            raise SystemExit(f"the pipeline did not finish within an hour: {procs[0].log_tail()}")
        cpu = sum(tree_cpu_seconds(p) for p in pids) - cpu0
        peak = sum(rss_mib(p, "VmHWM") for p in pids)
        stage_peak = max((rss_mib(p, "VmHWM") for p in stage_pids), default=None)
        loader_peak = max((rss_mib(p, "VmHWM") for p in loader_pids), default=None)
        insert_rows = sum(metric(p, "pw_warehouse_rows_total") for p in ports)  # every table
        event_rows = sum(metric(p, 'pw_warehouse_rows_total{table="audit.events"}') for p in ports)
        insert_seconds = sum(metric(p, "pw_warehouse_insert_seconds_sum") for p in ports)
        parts = _active_parts(procs)
        alerts = sum(metric(p, "pw_alerts_total") for p in ports)
    finally:
        for w in procs:
            w.stop()
    result: dict[str, Any] = {
        "workers": workers,
        "events": count,
        "produce_seconds": round(produced, 3),
        "sequenced_seconds": round(sequenced, 3),
        "stored_seconds": round(stored, 3),
        "ingest_events_per_second": round(count / sequenced),
        "end_to_end_events_per_second": round(count / stored),
        "alert_records": int(alerts),
        "worker_cpu_seconds": round(cpu, 1),
        "worker_cpu_cores_busy": round(cpu / stored, 2),
        "broker_cpu_seconds": round(cpu_seconds(broker) - broker_cpu0, 1) if broker else None,
        "worker_cpu_us_per_event": round(cpu / count * 1e6, 1),
        "broker_cpu_us_per_event": round((cpu_seconds(broker) - broker_cpu0) / count * 1e6, 1)
        if broker
        else None,
        "worker_peak_rss_mib": round(peak, 1),
        "worker_rss_mib_at_quarters": quarters,
        "worker_peak_rss_reached": peak_at,
        "stage_process_peak_rss_mib": round(stage_peak, 1) if stage_peak else None,
        "stage_process_rss_mib_at_quarters": stage_quarters if any(stage_quarters) else None,
        "warehouse": {
            "rows": int(insert_rows),  # audit.events and audit.alerts
            "event_rows": int(event_rows),
            "insert_seconds": round(insert_seconds, 3) if insert_seconds else None,
            "insert_rows_per_second": round(insert_rows / insert_seconds)
            if insert_seconds
            else None,
            "active_parts_events": parts,
        },
    }
    if loader_pids:  # a warehouse loader process (PW_WAREHOUSE_LOADER=process)
        result["loader_process_peak_rss_mib"] = round(loader_peak, 1) if loader_peak else None
        result["loader_process_rss_mib_at_quarters"] = (
            loader_quarters if any(loader_quarters) else None
        )
    if recover:  # the state load of a restart on these topics, with and without snapshots
        result["recovery"] = recovery(ns)
        print("recovery", result["recovery"], flush=True)
    return result


def _active_parts(procs: list[Worker]) -> int | None:
    """Active parts of audit.events; None where /v1/sql refuses system tables (its SQL guard does)."""
    import urllib.error

    try:
        return sum(
            int(
                w.ns.scalar(
                    "SELECT count() FROM system.parts WHERE database = 'audit' AND table = 'events' AND active"
                )
            )
            for w in procs
        )
    except urllib.error.HTTPError:
        return None


def _child_rows(one: dict[str, Any], key: str, label: str) -> list[tuple[str, str]]:
    """A child process's peak RSS and RSS at the quarters (`key`: "stage_process" or
    "loader_process"), where the run has them."""
    rows = []
    if one.get(f"{key}_peak_rss_mib"):
        rows.append((f"{label} peak RSS", f"{one[f'{key}_peak_rss_mib']} MiB"))
    if one.get(f"{key}_rss_mib_at_quarters"):
        quarters = " / ".join(f"{v}" for v in one[f"{key}_rss_mib_at_quarters"])
        rows.append((f"{label} RSS at 25/50/75/100 %", f"{quarters} MiB"))
    return rows


def markdown(figures: dict[str, Any]) -> str:
    one = figures["pipeline_1_worker"]
    rows = [
        ("events", f"{one['events']:,}"),
        (
            "ceiling: bare aiokafka consumer",
            f"{figures['ceiling']['events_per_second']:,} events/s",
        ),
        ("pipeline, 1 worker: sequenced (ledger)", f"{one['ingest_events_per_second']:,} events/s"),
        (
            "pipeline, 1 worker: end to end (warehouse)",
            f"{one['end_to_end_events_per_second']:,} events/s",
        ),
        ("ratio to the ceiling", f"{figures['ratio_to_ceiling']:.3f}"),
        ("worker and children CPU (cores busy)", f"{one['worker_cpu_cores_busy']}"),
        (
            "worker and children CPU per event (all threads: ingest, detection, warehouse loader,"
            " web; and its child processes, the provider stage and the warehouse loader, if any)",
            f"{one.get('worker_cpu_us_per_event')} µs",
        ),
        ("broker CPU per event", f"{one.get('broker_cpu_us_per_event')} µs"),
        ("worker peak RSS", f"{one['worker_peak_rss_mib']} MiB"),
        (
            "worker RSS at 25/50/75/100 %",
            " / ".join(f"{v}" for v in one["worker_rss_mib_at_quarters"]) + " MiB",
        ),
        (
            "worker peak RSS last rose (sampled every 0.25 s)",
            _peak_reached(one.get("worker_peak_rss_reached") or {}, one["events"]),
        ),
        *_child_rows(one, "stage_process", "provider stage process"),
        *_child_rows(one, "loader_process", "loader process"),
        ("warehouse insert", f"{one['warehouse']['insert_rows_per_second'] or '-'} rows/s"),
        (
            "warehouse active parts (audit.events)",
            f"{one['warehouse']['active_parts_events'] or '-'}",
        ),
    ]
    lat = figures.get("latency") or {}
    for clock in ("produced", "visible"):
        ms = lat.get(f"latency_ms_alert_{clock}")
        if ms:
            rows.append(
                (
                    f"event-to-alert latency, alert {clock}, at {lat['rate_events_per_second']:,} events/s",
                    f"p50 {ms['p50']} ms, p95 {ms['p95']} ms, p99 {ms['p99']} ms ({lat['alert_records']} alerts)",
                )
            )
    if lat.get("backlog_events_max") is not None:
        rows.append(
            (
                "backlog during the latency run (sent, not yet sequenced)",
                f"median {lat['backlog_events_median']:,}, max {lat['backlog_events_max']:,} events",
            )
        )
    if txn := lat.get("ingest_transaction_ms"):
        rows.append(
            (
                "ingest transactions during the latency run, start to commit (interpolated in the"
                " histogram's buckets)",
                f"{txn['count']:,}: mean {txn['mean_ms']} ms, p50 {txn['p50_ms']} ms,"
                f" p90 {txn['p90_ms']} ms, p99 {txn['p99_ms']} ms",
            )
        )
    if lat.get("worker_threads_us_per_event"):
        rows.append(
            (
                "the worker's threads during the latency run, CPU per event (on a backlog:"
                " `python -m bench.cpu_budget`)",
                ", ".join(
                    f"{name} {us} µs"
                    for name, us in list(lat["worker_threads_us_per_event"].items())[:5]
                ),
            )
        )
    if lat.get("load_client"):
        rows.append(
            (
                "the latency run's load (its producer; the bench's CPU per event, on the same cores)",
                f"{lat['load_client']}, {lat['bench_cpu_us_per_event']} µs",
            )
        )
    for name, label in (("with_snapshots", "from the snapshots"), ("whole_ledger", "whole ledger")):
        load = (one.get("recovery") or {}).get(name)
        if load:
            rows.append(
                (
                    f"restart after the run, state loaded {label}",
                    f"{load['start_to_loaded_seconds']} s from start ({load['ledger_entries_read']:,}"
                    f" ledger entries read, slowest partition {load['slowest_partition_seconds']} s,"
                    f" {load['from_snapshot']} of {load['partitions_loaded']} from a snapshot)",
                )
            )
    two = figures.get("pipeline_2_workers")
    if two:
        rows.append(("2 workers: end to end", f"{two['end_to_end_events_per_second']:,} events/s"))
        rows.append(("scaling factor (2 workers / 1)", f"{figures['scaling_factor']:.2f}"))
    lines = [
        f"# Benchmark {figures['measured_at']}",
        "",
        f"Command: `{figures['command']}`",
        "",
        "| measure | result |",
        "|---|---|",
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += [f"| {a} | {b} |" for a, b in stage_rows(figures)]
    ingest = figures.get("ingest_stages_cpu_us_per_event")
    if ingest:
        lines += [
            "",
            "CPU per event by stage of the ingest service, in-process (bench/ingest_stages.py; 20,000"
            " events, after a pass over 2,000 that is not counted),"
            f" detectors {figures.get('detectors', 'pure Python')}:",
            "",
            "| stage | µs per event |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in ingest.items()),
        ]
    lines += ["", f"Machine: {figures['machine']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--latency-warmup",
        type=float,
        default=10.0,
        help="seconds of the same rate before the latency run is measured",
    )
    parser.add_argument(
        "--latency-load",
        choices=LOADS,
        default=LOADS[0],
        help="the latency run's load producer (bench/latency_load.py, Paced)",
    )
    parser.add_argument(
        "--latency-stage",
        choices=STAGE_PLACES,
        default=STAGE_PLACES[0],
        help="where the latency run's provider stage runs: the worker runs it (as its "
        "PW_PROVIDER_STAGE says: by default a child process), or the bench starts "
        "`partnerwatch provider-stage` beside it (bench/alert_latency.py)",
    )
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--latency-rate",
        type=float,
        action="append",
        default=[],
        help="only the latency run, at this rate (repeatable); to <date>-latency.json/.md",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="worker setting K=V (repeatable)"
    )
    parser.add_argument(
        "--only", action="append", choices=OPTIONAL, default=[], help="only this optional stage"
    )
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--skip-notifications", action="store_true")
    args = parser.parse_args()
    if args.only:
        stages(args.only)
        return
    WORKER_ENV.update(item.split("=", 1) for item in args.env)
    if args.latency_rate:
        latency_only(
            args.latency_rate,
            args.latency_seconds,
            args.latency_warmup,
            args.latency_load,
            args.latency_stage,
        )
        return
    messages = StoredStream(args.count)
    figures: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.run --count {args.count}"
        + (" --skip-scaling" if args.skip_scaling else "")
        + (" --skip-recovery" if args.skip_recovery else "")
        + (" --skip-gateway" if args.skip_gateway else "")
        + (" --skip-notifications" if args.skip_notifications else "")
        + (f" --latency-load {args.latency_load}" if args.latency_load != LOADS[0] else "")
        + (
            f" --latency-stage {args.latency_stage}"
            if args.latency_stage != STAGE_PLACES[0]
            else ""
        )
        + "".join(f" --env {item}" for item in args.env),
        "worker_env": WORKER_ENV,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "kafka_crc": kafka_crc.mode(),
            "interpreter": interpreter(),
        },
    }
    from bench.ingest_stages import STAGES, detectors_variant, run_once

    sample = messages.head(20_000)
    # One pass first, not counted: what a worker does once (the GeoIP data loaded on the first
    # lookup, about 0.36 s; the caches filled) is not a cost per event. Without it, detection
    # read about 44 µs per event here against about 18 once warm (session 20).
    run_once(messages.head(2_000), 500)
    seconds, _ = run_once(sample, 500)
    figures["detectors"] = detectors_variant()  # this process's; the workers' load the same
    figures["ingest_stages_cpu_us_per_event"] = {
        s: round(seconds[s] / len(sample) * 1e6, 1) for s in STAGES
    }
    print("ingest stages", figures["ingest_stages_cpu_us_per_event"], flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
            root = Path(tmp)
            ns = Namespace(root)
            produce(ns, messages)
            figures["ceiling"] = ceiling(ns, len(messages))
            print("ceiling", figures["ceiling"], flush=True)
            figures["pipeline_1_worker"] = one = run_pipeline(
                root, messages, workers=1, recover=not args.skip_recovery
            )
            print("pipeline", one, flush=True)
            figures["ratio_to_ceiling"] = round(
                one["end_to_end_events_per_second"] / figures["ceiling"]["events_per_second"], 4
            )
            rate = max(10.0, one["end_to_end_events_per_second"] / 2)
            figures["latency"] = latency(
                root,
                rate,
                args.latency_seconds,
                args.latency_warmup,
                args.latency_load,
                args.latency_stage,
            )
            print("latency", figures["latency"], flush=True)
            if not args.skip_scaling:
                figures["pipeline_2_workers"] = two = run_pipeline(root, messages, workers=2)
                figures["scaling_factor"] = round(
                    two["end_to_end_events_per_second"] / one["end_to_end_events_per_second"], 3
                )
                print("scaling", two, flush=True)
    finally:
        messages.remove()
        # the runs' topics: left on the local broker they make every later run slower
        with contextlib.suppress(KafkaAccessError):
            delete_namespace_topics(Settings.from_env(dict(os.environ)), CREATED)
    figures.update(stages([n for n in OPTIONAL if not getattr(args, f"skip_{n}")]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / datetime.now(UTC).strftime("%Y-%m-%d")
    stem.with_suffix(".json").write_text(
        orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    stem.with_suffix(".md").write_text(markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
