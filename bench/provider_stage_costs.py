"""CPU per event of the provider-wide stage, in-process, on the benchmark's mix (no Kafka).

The stage (streams/provider_stage.py) reads the whole ledger and folds it through
`detectors.provider_wide.run.Stage`. Its input here is the ledger the ingest service writes for
the benchmark's mix (bench/workload.py `stream`, validated, masked and sequenced by the same
functions as the ingest service, bench/ingest_stages.py `Stages`: the real ledger records),
spread over `--partitions` ledger partitions by account (Kafka's default partitioner).

After one untimed pass (the GeoIP data loads at the first lookup, the lookup caches fill as in
a stage that has run a while), per run, from empty state, each figure CPU seconds over the number of events, in µs:
- `parse`: a ledger record to its event (`orjson.loads`, `pipeline.ledger.event_of`), each
  dropped once parsed;
- `observe`: `Stage.observe` of every event, in the stage's merge order (oldest event time first
  across partitions), the events parsed beforehand;
- per rule: each provider-wide rule's own CPU time (`time.thread_time` around the rule inside
  `Stage.observe`, in a pass of its own, less the cost of one clock read per call); `stage machinery` is `observe`
  less the rules: the per-event context, routing, state keys and alert folding and closing;
- `fold loop`: the stage's own loop, `ProviderStage._take` (a fetched batch into the
  partitions' buffers, keyed by event time) and `_merge` (merge by event time, parse, fold,
  publish, count), on the records
  in batches of `--batch` (5,000 like the stage's `getmany`), the same share from each
  partition. Without Kafka: the consumer is a stand-in that says how far each partition is
  fetched (the merge holds back at an empty buffer with more to come, so it folds in exactly the
  order of `observe`), the alert producer one whose `send` returns a settled future, and the
  ingest backlog is never asked; the metrics are the real ones. `fold loop machinery` is the
  fold loop less `parse` and `observe`.

Every pass checks that it published the same alert versions, in the same order, as `observe`
alone (a digest of their bytes is in the results, to compare across changes), and the final
state's digest (orjson, dict order kept, as the snapshot topic stores it) is reported too.

The collector runs with the worker's thresholds (streams/collector.py `GC_THRESHOLD`: the
stage is a thread of the worker). The detectors run as built (compiled where the optional mypyc build is present), or pure Python
with `--pure-detectors`. Results go to bench/results/<date>-provider-stage-costs[-<label>].json
and .md.

    python -m bench.provider_stage_costs [--count 50000] [--runs 3] [--partitions 4]
        [--batch 5000] [--pure-detectors] [--label L] [--before bench/results/<earlier>.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import heapq
import math
import os
import platform
import statistics
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

#: The rows of the report, in order (per-rule rows follow `stage machinery`).
ROWS = ("parse", "observe", "stage machinery", "fold loop", "fold loop machinery")


class Record(NamedTuple):
    """What the stage reads of an aiokafka ConsumerRecord."""

    offset: int
    value: bytes
    #: the ledger record's key (the account), for bench/provider_stage_process.py
    key: bytes | None = None


def ledger(count: int, partitions: int) -> dict[int, list[Record]]:
    """The ledger the ingest service writes for `count` events of the mix, per partition."""
    from aiokafka.partitioner import DefaultPartitioner

    from bench.ingest_stages import Stages
    from bench.workload import stream
    from pipeline.config import Settings

    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    core = Stages(Settings.from_env({}))
    messages = stream(count)
    out: dict[int, list[Record]] = {p: [] for p in every}
    for start in range(0, len(messages), 500):
        chunk = messages[start : start + 500]
        validated = core.stage_validate(chunk, range(start, start + len(chunk)))
        core.stage_sequence(core.stage_mask(validated))
        for key, value in core.out.ledger:
            assert value is not None  # a ledger record, never a tombstone
            records = out[partitioner(key, every, every)]
            records.append(Record(len(records), value, key))
    return out


def merged(parts: dict[int, list[Record]]) -> list[bytes]:
    """The records in the order the stage folds them: the oldest head first, ties by partition."""
    keyed = [[(orjson.loads(r.value)["occurred_at"], p, r.value) for r in parts[p]] for p in parts]
    return [value for _, _, value in heapq.merge(*keyed)]


class Consumer:
    """Stands in for the ledger consumer: each partition committed to its end, fetched up to
    `fetched` (so the merge holds back, as the stage does, while a partition's buffer is empty
    and it has records not fetched yet)."""

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.fetched = {p: 0 for p in ends}

    def last_stable_offset(self, tp: Any) -> int:
        return self.ends[tp.partition]

    async def position(self, tp: Any) -> int:
        return self.fetched[tp.partition]


class Producer:
    """Stands in for the alert producer: keeps what was sent, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        self.sent.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def digest(values: list[bytes]) -> str:
    out = hashlib.sha256()
    for value in values:
        out.update(value)
    return out.hexdigest()


def state_digest(states: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(states, option=orjson.OPT_NON_STR_KEYS)).hexdigest()


def run_once(
    parts: dict[int, list[Record]], ordered: list[bytes], batch: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """One pass of each measurement: CPU seconds per row, and what came out."""
    import detectors.provider_wide.run as stage_module
    from detectors.provider_wide import ALL
    from detectors.provider_wide.run import Stage
    from pipeline.config import Settings
    from pipeline.ledger import event_of

    settings = Settings.from_env({})
    config = settings.detect
    seconds: dict[str, float] = {}

    gc.collect()
    started = time.process_time()
    for value in ordered:
        event_of(orjson.loads(value))
    seconds["parse"] = time.process_time() - started
    events = [event_of(orjson.loads(value)) for value in ordered]

    stage = Stage(config)
    gc.collect()
    started = time.process_time()
    versions = [alert for event in events for alert in stage.observe(event)]
    seconds["observe"] = time.process_time() - started
    alerts = [orjson.dumps(a) for a in versions]
    out: dict[str, Any] = {
        "alert_versions": len(alerts),
        "alerts_digest": digest(alerts),
        "state_digest": state_digest(stage.states),
    }

    rules = ALL
    spent = {name: 0.0 for name, _ in rules}
    calls = {name: 0 for name, _ in rules}
    clock = time.thread_time  # CPU time: a busy machine's preemptions are not charged

    def timed(name: str, rule: Any) -> Any:
        def detect(event: Any, state: Any, ctx: Any) -> Any:
            begun = clock()
            found = rule(event, state, ctx)
            spent[name] += clock() - begun
            calls[name] += 1
            return found

        return detect

    # `Stage` runs the rules it finds in its module (compiled or not): the timed ones, for once
    stage_module.ALL = tuple((name, timed(name, rule)) for name, rule in rules)  # type: ignore[attr-defined]
    try:
        stage = Stage(config)
        for event in events:
            stage.observe(event)
    finally:
        stage_module.ALL = rules  # type: ignore[attr-defined]
    read = clock_cost()
    own = {name: spent[name] - calls[name] * read for name in spent}
    seconds.update(own)
    seconds["stage machinery"] = seconds["observe"] - sum(own.values())

    fold, sent, states = fold_loop(settings, parts, batch)
    seconds["fold loop"] = fold
    seconds["fold loop machinery"] = fold - seconds["parse"] - seconds["observe"]
    if digest(sent) != out["alerts_digest"] or state_digest(states) != out["state_digest"]:
        raise AssertionError("the fold loop published or kept something else than observe")
    return seconds, out


def clock_cost() -> float:
    """Seconds one `time.thread_time()` takes (the least of a few samples): a timed call holds
    about one, taken off each rule's figure."""
    clock = time.thread_time
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10_000):
            clock()
        best = min(best, (time.perf_counter() - started) / 10_000)
    return best


def fold_loop(
    settings: Any, parts: dict[int, list[Record]], batch: int
) -> tuple[float, list[bytes], dict[str, Any]]:
    """`ProviderStage._take` and `_merge` over the ledger in fetched batches: CPU seconds, the
    alert versions published, the final state."""
    from aiokafka import TopicPartition

    from detectors.provider_wide.run import Stage
    from streams.provider_stage import ProviderStage

    topic = settings.ledger_topic
    share = max(1, batch // len(parts))
    batches: list[tuple[dict[Any, list[Record]], dict[int, int]]] = []
    for start in range(0, max(len(r) for r in parts.values()), share):
        fetched = {TopicPartition(topic, p): parts[p][start : start + share] for p in sorted(parts)}
        batches.append((fetched, {p: min(len(r), start + share) for p, r in parts.items()}))
    holder = ProviderStage(settings)
    producer = Producer()
    consumer = Consumer({p: len(r) for p, r in parts.items()})
    holder.stage = Stage(settings.detect)
    holder._alerts = producer
    holder._consumer = consumer
    holder._backlog._at = math.inf  # never asks the broker
    holder.partitions = sorted(parts)
    holder.buffers = {p: deque() for p in parts}

    async def fold() -> float:
        gc.collect()
        started = time.process_time()
        for fetched, positions in batches:
            consumer.fetched = positions
            holder._take(fetched)
            await holder._merge()
        return time.process_time() - started

    spent = asyncio.run(fold())
    if any(holder.buffers.values()):
        raise AssertionError("the merge held entries back")
    return spent, producer.sent, holder.stage.states


def warm_up(ordered: list[bytes]) -> None:
    """One untimed pass: the GeoIP data is loaded at the first lookup, and the lookups' caches
    fill as they do in a stage that has run a while."""
    from detectors.provider_wide.run import Stage
    from pipeline.config import Settings
    from pipeline.ledger import event_of

    stage = Stage(Settings.from_env({}).detect)
    for value in ordered:
        stage.observe(event_of(orjson.loads(value)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5000)
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
    from bench.workload import write_results
    from streams.collector import GC_THRESHOLD

    gc.set_threshold(*GC_THRESHOLD)  # as in a worker, whose threads the stage is one of

    parts = ledger(args.count, args.partitions)
    ordered = merged(parts)
    n = len(ordered)
    warm_up(ordered)
    runs: list[dict[str, float]] = []
    out: dict[str, Any] = {}
    for i in range(args.runs):
        seconds, out = run_once(parts, ordered, args.batch)
        runs.append(seconds)
        print(
            f"run {i + 1}: observe {seconds['observe'] / n * 1e6:.1f}, fold loop"
            f" {seconds['fold loop'] / n * 1e6:.1f} µs per event",
            flush=True,
        )
    per_event = {
        k: round(statistics.median(r[k] for r in runs) / n * 1e6, 2) for k in runs[0] if k in ROWS
    }
    rules = {
        k: round(statistics.median(r[k] for r in runs) / n * 1e6, 2)
        for k in runs[0]
        if k not in ROWS
    }
    rules = dict(sorted(rules.items(), key=lambda kv: -kv[1]))
    command = (
        f"python -m bench.provider_stage_costs --count {args.count} --runs {args.runs}"
        f" --partitions {args.partitions} --batch {args.batch}"
        + (" --pure-detectors" if args.pure_detectors else "")
        + (f" --label {args.label}" if args.label else "")
    )
    figures: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "events": n,
        **out,
        "detectors": detectors_variant(),
        "us_per_event": per_event,
        "rules_us_per_event": rules,
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
            for k in (
                "measured_at",
                "command",
                "detectors",
                "alerts_digest",
                "state_digest",
                "us_per_event",
                "rules_us_per_event",
            )
        }
    was = {**before["us_per_event"], **before["rules_us_per_event"]} if before else {}
    rows = [
        *((k, per_event[k]) for k in ("parse", "observe")),
        *rules.items(),
        *((k, per_event[k]) for k in ROWS[2:]),
    ]
    same = (
        ""
        if before is None
        else " Alert versions and final state: "
        + (
            "the same as before (digests)."
            if (before["alerts_digest"], before["state_digest"])
            == (out["alerts_digest"], out["state_digest"])
            else "NOT the same as before."
        )
    )
    lines = [
        f"# CPU per event of the provider stage, {figures['measured_at']}",
        "",
        f"Command: `{command}`; median of {args.runs} runs, per event of the mix ({n:,} ledger"
        f" events, {out['alert_versions']:,} alert versions). Detectors: {figures['detectors']}."
        + same,
        "",
        *(
            [
                f"Before: `{before['command']}` at {before['measured_at']}"
                f" ({before['detectors']}).",
                "",
                "| µs per event | now | before |",
                "|---|---|---|",
            ]
            if before is not None
            else ["| µs per event | now |", "|---|---|"]
        ),
        *(
            f"| {'  rule ' if k in rules else ''}{k} | {v} |"
            + (f" {was.get(k, '')} |" if before is not None else "")
            for k, v in rows
        ),
        "",
        "`observe` is `Stage.observe` alone (events parsed beforehand); the rules are timed"
        " inside it in a separate pass; `stage machinery` = `observe` less the rules. `fold"
        " loop` = `ProviderStage._take` + `_merge` (parse, merge, fold, publish, count);"
        " `fold loop machinery` = `fold loop` less `parse` and `observe`.",
        "",
    ]
    write_results("provider-stage-costs", args.label, figures, lines)


if __name__ == "__main__":
    main()
