"""Event-to-alert latency of one worker fed at a fixed rate (`make bench` step 3, bench/run.py).

`latency` measures one rate; `latency_only` (`python -m bench.run --latency-rate R`) runs
several rates alone and writes bench/results/<date>-latency.json and .md.
"""

from __future__ import annotations

import contextlib
import os
import pkgutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

import detectors.provider_wide.rules as provider_wide_rules
from bench.cpu_budget import python_names, thread_times, threads_per_event
from bench.latency_load import LOADS, Paced
from bench.procstats import (
    broker_pid,
    by_label,
    cpu_seconds,
    histogram,
    histogram_figures,
    metric,
    tree_cpu_seconds,
)
from bench.provider_stage_process import start_stage, stop_stage
from bench.workload import RESULTS, WORKER_ENV, stream
from partnerwatch.local_worker import Namespace, Worker, delete_namespace_topics, free_port
from pipeline.config import checkout
from sinks.kafka_io import KafkaAccessError, consumer, ensure_topics
from tools import kafka_crc

#: Where the provider stage runs (`--latency-stage`): run by the worker as its PW_PROVIDER_STAGE
#: says (by default its child process; `--env PW_PROVIDER_STAGE=worker`: a thread of it), or
#: `partnerwatch provider-stage` started by the bench beside it (the worker on `off`).
STAGES = ("worker", "process")
#: The ingest transactions' start-to-commit histogram (streams/ingest_partition.py)
TXN_SECONDS = "pw_ingest_transaction_seconds"
#: How long the provider stage's merge held entries back, by reason (streams/provider_stage.py)
HELD_SECONDS = "pw_provider_stage_held_seconds_total"


def latency(
    root: Path,
    rate: float,
    seconds: float,
    warmup: float = 10.0,
    load: str = LOADS[0],
    stage: str = STAGES[0],
) -> dict[str, Any]:
    """Feed a fresh worker at `rate` events/s for `seconds`; event-to-alert latency per alert record.

    Two clocks, both on this machine: the alert record's own Kafka timestamp (when the worker
    produced it), and when a read_committed consumer tailing the alerts topic received it.
    Before the measured run the worker gets `warmup` seconds of the same rate (its partitions,
    caches and warehouse come up; a backlog built meanwhile would be measured as latency), and
    the backlog (events sent, not yet sequenced) is sampled through the run: a rate the worker
    cannot hold shows as a growing backlog, not only as latency. The worker's and the broker's
    CPU per event and the ingest transactions (how many, and the time from each one's start to
    its commit: the worker's `pw_ingest_transaction_seconds`) are counted over the measured run,
    and the produced latency is split by origin (per-account alerts from ingest, provider-wide
    ones from the provider stage). `BENCH_LATENCY_SAMPLES=<file>` writes every alert's timestamps to a file.
    The bench's own CPU over the measured run (its load producer, the alert tail, the backlog
    sampler) is reported too: it runs on the same cores as the worker and the broker. With
    `stage="process"` the provider stage runs as `partnerwatch provider-stage` beside the worker
    (`PW_PROVIDER_STAGE=off` in the worker), and its CPU per event is reported.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown provider stage placement {stage!r}: one of {', '.join(STAGES)}")
    env = dict(WORKER_ENV)
    if stage == "process":
        env["PW_PROVIDER_STAGE"] = "off"
    ns = Namespace(root, extra_env=env)
    settings = ns.settings  # built from the environment at each access: once, not per message
    topic = settings.actions_topic
    ensure_topics(settings)
    total = int(rate * seconds)
    messages = stream(total, seed=5)
    worker = Worker(ns).start()
    stage_proc: tuple[subprocess.Popen[bytes], IO[bytes]] | None = None
    if stage == "process":
        stage_proc = start_stage(root, ns, checkout() or root, free_port())
    warm = stream(max(50, int(rate * warmup)), seed=6)
    prod = Paced(settings, topic, load)
    warm_sent = prod.send(warm, rate)
    deadline = time.monotonic() + 120
    while metric(ns.port, "pw_events_accepted_total") < len(warm) and time.monotonic() < deadline:
        time.sleep(0.2)
    backlog: list[float] = []
    sent = [0]
    sampling = threading.Event()

    def sample_backlog() -> None:
        while not sampling.wait(0.5):
            backlog.append(len(warm) + sent[0] - metric(ns.port, "pw_events_accepted_total"))

    sampler = threading.Thread(target=sample_backlog, daemon=True)
    sampler.start()
    received: list[tuple[str, float]] = []
    stop = threading.Event()
    tail = threading.Thread(target=_tail, args=(ns, received, stop), daemon=True)
    tail.start()
    worker_pid = worker.proc.pid if worker.proc is not None else None
    broker = broker_pid()
    try:
        if stage_proc is not None and stage_proc[0].poll() is not None:
            raise RuntimeError(f"the provider stage process ended (see {stage_proc[1].name})")
        # the worker's threads by the interpreter's names (py-spy, where installed), read before
        # the measured run: the dump pauses the worker for a moment
        names = python_names(worker_pid) if worker_pid else {}
        stage0 = cpu_seconds(stage_proc[0].pid) if stage_proc is not None else 0.0
        threads0 = _threads(worker_pid)
        cpu0 = tree_cpu_seconds(worker_pid) if worker_pid else 0.0
        broker0 = cpu_seconds(broker) if broker else 0.0
        transactions0 = _transactions(ns.port)
        txn_times0 = histogram(ns.port, TXN_SECONDS)
        held0 = by_label(ns.port, HELD_SECONDS, "reason")
        own0 = time.process_time()
        sent_rate = prod.send(messages, rate, sent)
        own_cpu = time.process_time() - own0
        prod.close()
        sampling.set()  # the backlog while sending, not while draining
        # the CPU and the transactions of the measured run (mostly while sending)
        worker_cpu = tree_cpu_seconds(worker_pid) - cpu0 if worker_pid else None
        threads1 = _threads(worker_pid)
        broker_cpu = cpu_seconds(broker) - broker0 if broker else None
        stage_cpu = cpu_seconds(stage_proc[0].pid) - stage0 if stage_proc is not None else None
        transactions = _transactions(ns.port) - transactions0
        txn_times = histogram_figures(histogram(ns.port, TXN_SECONDS), txn_times0)
        held = by_label(ns.port, HELD_SECONDS, "reason")
        time.sleep(5)  # let the last alerts out (commit interval)
        stop.set()
        tail.join(30)
        measured = {orjson.loads(value)["event_id"] for _, value in messages}  # not the warm-up's
        sources = {
            event_id: r.timestamp
            for r in ns.read_topic(topic, expect=total + len(warm), timeout=120)
            if (event_id := orjson.loads(r.value)["event_id"]) in measured
        }
        alerts = ns.read_topic(ns.settings.alerts_topic, expect=len(received), timeout=30)
    finally:
        sampling.set()  # also on failure: the sampler would poll a stopped worker
        if stage_proc is not None:
            stop_stage(*stage_proc)
        worker.stop()
        # its topics: left on the local broker they make every later run slower (a broker that
        # is gone has nothing to tidy, and must not hide why the run failed)
        with contextlib.suppress(KafkaAccessError):
            delete_namespace_topics(settings, [ns.name])
    # (latency, detector) of each alert record of the measured events
    made = [
        (r.timestamp - sources[t], alert["detector"])
        for r in alerts
        if (t := (alert := orjson.loads(r.value))["evidence_event_ids"][-1]) in sources
    ]
    produced = sorted(ms for ms, _ in made)
    visible = sorted(at - sources[t] for t, at in received if t in sources)
    if samples := os.environ.get("BENCH_LATENCY_SAMPLES"):  # every alert's figures, to study
        Path(samples).write_bytes(
            orjson.dumps(
                {
                    "alerts": [
                        {"src": sources[t], "ts": r.timestamp, "det": alert["detector"], "ev": t}
                        for r in alerts
                        if (t := (alert := orjson.loads(r.value))["evidence_event_ids"][-1])
                        in sources
                    ],
                    "visible": [{"ev": t, "at": at} for t, at in received if t in sources],
                }
            )
        )
    return {
        "rate_events_per_second": round(rate),
        "seconds": seconds,
        "events": total,
        "warmup_seconds": warmup,
        # the rates the producer reached (a producer slower than `rate` measures less load)
        "warmup_sent_events_per_second": round(warm_sent),
        "sent_events_per_second": round(sent_rate),
        "backlog_events_max": round(max(backlog)) if backlog else None,
        "backlog_events_median": round(statistics.median(backlog)) if backlog else None,
        "alert_records": len(produced),
        "worker_cpu_us_per_event": round(worker_cpu / total * 1e6, 1)
        if worker_cpu is not None
        else None,
        "broker_cpu_us_per_event": round(broker_cpu / total * 1e6, 1)
        if broker_cpu is not None
        else None,
        # the worker's own threads (not its provider stage process), largest first: at live
        # rates against a backlog's (bench.cpu_budget), where the time per event grows. Threads
        # that ended within the run are not counted; without py-spy the interpreter's threads
        # are not told apart (their OS name is the process's, "python")
        "worker_threads_us_per_event": threads_per_event(threads1, threads0, names, total),
        "ingest_transactions": transactions,
        # start to commit of each committed ingest transaction (states-only ones included), from the
        # worker's histogram: p50/p90/p99 interpolated within its buckets
        "ingest_transaction_ms": txn_times,
        # seconds the provider stage's merge held entries back over the measured run, by reason
        # (the worker's /metrics relays its stage's; a stage the bench runs beside it: None)
        "provider_stage_held_seconds": held_between(held0, held) if stage == "worker" else None,
        "load_client": load,
        "provider_stage": stage,
        "stage_cpu_us_per_event": round(stage_cpu / total * 1e6, 1)
        if stage_cpu is not None
        else None,
        "bench_cpu_us_per_event": round(own_cpu / total * 1e6, 1),
        "latency_ms_alert_produced": _quantiles(produced),
        "latency_ms_alert_visible": _quantiles(visible),
        # per-account alerts come from ingest; provider-wide ones from the provider stage,
        # after the ledger transaction commits (streams/provider_stage.py)
        "latency_ms_alert_produced_by_origin": {
            origin: {
                "alerts": len(values),
                **(_quantiles(values) or {}),
            }
            for origin, wide in (("per_account", False), ("provider_wide", True))
            if (values := sorted(ms for ms, d in made if (d in PROVIDER_WIDE) == wide))
        },
    }


def held_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    """`pw_provider_stage_held_seconds_total` by reason between two readings; None when a count
    went back (the stage process was restarted between them, its counters from zero)."""
    held = {
        why: round(after.get(why, 0.0) - before.get(why, 0.0), 3)
        for why in ("ingest_backlog", "ledger_unfetched")
    }
    return held if min(held.values()) >= 0 else None


def _threads(pid: int | None) -> dict[int, tuple[str, float]]:
    """`bench.cpu_budget.thread_times` of the worker, or nothing when it is gone (its /proc
    folder with it): the run then fails on what the worker left, not on this reading."""
    if pid is None:
        return {}
    try:
        return thread_times(pid)
    except OSError:
        return {}


#: The provider-wide detectors' names (their alerts come from the provider stage).
PROVIDER_WIDE = frozenset(m.name for m in pkgutil.iter_modules(provider_wide_rules.__path__))


def _txn_times(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    return " / ".join(str(figures[k]) for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms"))


def _transactions(port: int) -> int:
    """The worker's ingest batches (one transaction each) so far, from /v1/health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=10) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # 503 while degraded: the body says the same
        body = exc.read()
    return int(orjson.loads(body)["ingest"]["batches"])


def _tail(ns: Namespace, received: list[tuple[str, float]], stop: threading.Event) -> None:
    """Note when each alert record becomes visible to a read_committed consumer."""
    from kafka import TopicPartition as KafkaTopicPartition

    topic = ns.settings.alerts_topic
    tail = consumer(ns.settings, role="bench-alert-tail")
    parts = [KafkaTopicPartition(topic, p) for p in range(ns.settings.topic_partitions)]
    tail.assign(parts)
    tail.seek_to_beginning(*parts)
    try:
        while not stop.is_set():
            for records in tail.poll(timeout_ms=50).values():
                now = time.time() * 1000
                received.extend(
                    (orjson.loads(r.value)["evidence_event_ids"][-1], now) for r in records
                )
    finally:
        tail.close()


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if len(values) < 2:
        return None
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(q[49], 1),
        "p95": round(q[94], 1),
        "p99": round(q[98], 1),
        "max": round(values[-1], 1),
    }


def latency_only(
    rates: list[float],
    seconds: float,
    warmup: float = 10.0,
    load: str = LOADS[0],
    stage: str = STAGES[0],
) -> None:
    """The latency run alone at the given rates, e.g. to see where a worker stops keeping up."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        for rate in rates:
            runs.append(latency(Path(tmp), rate, seconds, warmup, load, stage))
            print("latency", runs[-1], flush=True)
    crc = kafka_crc.mode()  # the workers' aiokafka is this process's
    stem = RESULTS / (datetime.now(UTC).strftime("%Y-%m-%d") + "-latency")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(
        orjson.dumps(
            {"worker_env": WORKER_ENV, "kafka_crc": crc, "runs": runs}, option=orjson.OPT_INDENT_2
        ).decode()
        + "\n"
    )
    lines = [
        f"# Event-to-alert latency {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        f"Command: `python -m bench.run {' '.join(f'--latency-rate {r:g}' for r in rates)} --latency-seconds {seconds:g} --latency-warmup {warmup:g} --latency-load {load} --latency-stage {stage}`;"
        f" aiokafka's CRC-32C in {crc} (tools/kafka_crc.py)",
        "",
        "| rate (events/s) | alert produced p50 / p95 / p99 / max (ms) | alert visible p50 / p95 / p99 (ms) | backlog median / max (events) | alerts | worker / broker / bench / stage process CPU per event (µs) | ingest transactions | transaction start to commit, mean / p50 / p90 / p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        p, v = run["latency_ms_alert_produced"] or {}, run["latency_ms_alert_visible"] or {}
        lines.append(
            f"| {run['rate_events_per_second']:,} | {p.get('p50')} / {p.get('p95')} / {p.get('p99')} / {p.get('max')}"
            f" | {v.get('p50')} / {v.get('p95')} / {v.get('p99')} | {run['backlog_events_median']} / {run['backlog_events_max']}"
            f" | {run['alert_records']} | {run['worker_cpu_us_per_event']} / {run['broker_cpu_us_per_event']} / {run['bench_cpu_us_per_event']}"
            f" / {run.get('stage_cpu_us_per_event') or '-'} | {run['ingest_transactions']:,}"
            f" | {_txn_times(run.get('ingest_transaction_ms'))} |"
        )
    lines += [
        "",
        "Alert produced, by origin (per-account: ingest; provider-wide: the provider stage):",
        "",
        "| rate (events/s) | origin | alerts | p50 / p95 / p99 / max (ms) |",
        "|---|---|---|---|",
    ]
    for run in runs:
        for origin, q in run["latency_ms_alert_produced_by_origin"].items():
            lines.append(
                f"| {run['rate_events_per_second']:,} | {origin} | {q['alerts']}"
                f" | {q.get('p50')} / {q.get('p95')} / {q.get('p99')} / {q.get('max')} |"
            )
    lines += [
        "",
        "The provider stage's merge held entries back, seconds over the measured run, by reason"
        " (`pw_provider_stage_held_seconds_total`; ingest_backlog: ingest catching up on an"
        " actions partition; ledger_unfetched: committed ledger records not fetched yet):",
        "",
        "| rate (events/s) | ingest_backlog | ledger_unfetched |",
        "|---|---|---|",
    ]
    for run in runs:
        held = run.get("provider_stage_held_seconds") or {}
        lines.append(
            f"| {run['rate_events_per_second']:,} | {held.get('ingest_backlog', '-')}"
            f" | {held.get('ledger_unfetched', '-')} |"
        )
    lines += [
        "",
        "The worker's threads over the measured run (its provider stage process apart), CPU per"
        " event sent (µs; on a backlog: `python -m bench.cpu_budget`):",
        "",
        "| rate (events/s) | threads |",
        "|---|---|",
    ]
    for run in runs:
        threads = run.get("worker_threads_us_per_event") or {}
        shown = ", ".join(f"{name} {us}" for name, us in list(threads.items())[:8])
        lines.append(f"| {run['rate_events_per_second']:,} | {shown or '-'} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
