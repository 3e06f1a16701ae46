"""What Kafka transactions cost the client and the broker at live rates: one transactional
producer per partition (the ingest service's way) against one producer for all of them (KIP-447's
way), on the local broker.

The ingest service commits each partition's batch in a transaction of that partition's own
producer (streams/ingest_partition.py). On a backlog a transaction carries up to 5,000 records and
its cost disappears; under live traffic it carries a few dozen, and the worker runs 45-100 of them
a second at half its rate (docs/performance.md, "Transactions at live rates"). This bench runs
only the transactions, with no work per record, so their cost can be read apart from everything
else the worker does:

- `per-partition`: four producers, each one partition's records and its source offset per
  transaction;
- `one`: one producer whose every transaction carries the records of all four partitions and
  their four source offsets.

Each producer's loop starts a transaction at most every `--interval` seconds (or as soon as its
previous one has committed, when that takes longer), with the records that arrived meanwhile at
`--rate` events/s (`--size` bytes each, the ingest service's ledger records average about 713
on the benchmark's mix), sent as one record batch per partition (`create_batch` / `send_batch`,
as the ingest service does), then the source offsets for a consumer group
(`send_offsets_to_transaction`) and the commit. After `--warmup` seconds, `--seconds` are
measured: this process's CPU (the producers' client and its event loop, uvloop as in the worker)
and the broker's (from /proc), per event and per transaction, the transactions per second and
their duration from start to commit.

aiokafka 0.14 sends the group's offsets without the consumer's generation and member id
(TxnOffsetCommit v0), so `one` measures what one producer across partitions costs, not KIP-447's
fencing of a stale worker, which a real single producer needs.

    python -m bench.txn_costs [--rate 6300] [--seconds 20] [--warmup 3] [--runs 2]
        [--interval 0.02] [--size 713] [--label L]

The modes alternate (`per-partition`, `one`, `one`, `per-partition`, ... for `--runs 2`), each on
topics of its own, deleted afterwards. Results: bench/results/<date>-txn-costs[-<label>].json and
.md. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from bench.procstats import broker_pid, cpu_seconds
from bench.workload import write_results

PARTITIONS = 4
MODES = ("per-partition", "one")


async def _topics(settings: Any, tag: str) -> tuple[str, str]:
    from aiokafka.admin import NewTopic

    from sinks.kafka_io import aio_admin

    ledger, source = f"tbench-txn-{tag}.ledger", f"tbench-txn-{tag}.actions"
    admin = aio_admin(settings, role="bench-txn")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (ledger, source)])
    finally:
        await admin.close()
    return ledger, source


async def _drop(settings: Any, *topics: str) -> None:
    from sinks.kafka_io import aio_admin

    admin = aio_admin(settings, role="bench-txn")
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


class _Loop:
    """One producer's transactions over `partitions`, and what they carried."""

    def __init__(self, producer: Any, partitions: list[int], args: argparse.Namespace) -> None:
        self.producer = producer
        self.partitions = partitions
        self.args = args
        self.value = b"x" * args.size
        self.offsets = dict.fromkeys(partitions, 0)
        self.durations: list[float] = []
        self.records = 0
        self._due = 0.0  # records owed per partition, carried between transactions

    async def run(self, until: float, ledger: str, source: str, group: str) -> None:
        from aiokafka.structs import OffsetAndMetadata, TopicPartition

        args, producer = self.args, self.producer
        share = args.rate / PARTITIONS  # events/s of one partition
        last = time.monotonic()
        while time.monotonic() < until:
            started = time.monotonic()
            self._due += share * (started - last)
            last = started
            count = int(self._due)
            self._due -= count
            await producer.begin_transaction()
            for p in self.partitions:
                batch = producer.create_batch()
                for _ in range(count):
                    if batch.append(key=None, value=self.value, timestamp=None) is None:
                        await producer.send_batch(batch, ledger, partition=p)
                        batch = producer.create_batch()
                        batch.append(key=None, value=self.value, timestamp=None)
                await producer.send_batch(batch, ledger, partition=p)
                self.offsets[p] += count
            await producer.send_offsets_to_transaction(
                {
                    TopicPartition(source, p): OffsetAndMetadata(self.offsets[p], "")
                    for p in self.partitions
                },
                group,
            )
            await producer.commit_transaction()
            self.durations.append(time.monotonic() - started)
            self.records += count * len(self.partitions)
            wait = args.interval - (time.monotonic() - started)
            if wait > 0:
                await asyncio.sleep(wait)


async def one_run(settings: Any, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One mode on topics of its own: warm-up, then the measured seconds."""
    from sinks.kafka_io import aio_batch_producer

    tag = uuid.uuid4().hex[:8]
    ledger, source = await _topics(settings, tag)
    group = f"tbench-txn-{tag}"
    shares = (
        [[p] for p in range(PARTITIONS)] if mode == "per-partition" else [list(range(PARTITIONS))]
    )
    loops: list[_Loop] = []
    try:
        for i, partitions in enumerate(shares):
            producer = aio_batch_producer(
                settings, role="bench-txn", transactional_id=f"{group}-{i}"
            )
            await producer.start()
            loops.append(_Loop(producer, partitions, args))
        end = time.monotonic() + args.warmup
        await asyncio.gather(*(loop.run(end, ledger, source, group) for loop in loops))
        for loop in loops:
            loop.durations.clear()
            loop.records = 0
        broker = broker_pid()
        cpu0, wall0 = time.process_time(), time.monotonic()
        broker0 = cpu_seconds(broker) if broker else 0.0
        end = wall0 + args.seconds
        await asyncio.gather(*(loop.run(end, ledger, source, group) for loop in loops))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        broker_cpu = cpu_seconds(broker) - broker0 if broker else None
    finally:
        for loop in loops:
            await loop.producer.stop()
        await _drop(settings, ledger, source)
    events = sum(loop.records for loop in loops)
    durations = sorted(d for loop in loops for d in loop.durations)
    txns = len(durations)
    return {
        "mode": mode,
        "producers": len(loops),
        "events_per_s": round(events / wall),
        "transactions_per_s": round(txns / wall, 1),
        "records_per_transaction": round(events / txns, 1),
        "client_cpu_us_per_event": round(cpu / events * 1e6, 1),
        "broker_cpu_us_per_event": round(broker_cpu / events * 1e6, 1)
        if broker_cpu is not None
        else None,
        "client_cpu_ms_per_transaction": round(cpu / txns * 1e3, 2),
        "broker_cpu_ms_per_transaction": round(broker_cpu / txns * 1e3, 2)
        if broker_cpu is not None
        else None,
        "transaction_ms_p50": round(durations[txns // 2] * 1e3, 1),
        "transaction_ms_p99": round(durations[min(txns - 1, int(txns * 0.99))] * 1e3, 1),
    }


def _report(args: argparse.Namespace, runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "# Kafka transactions at a live rate: a producer per partition against one for all",
        "",
        f"Command: `python -m bench.txn_costs --rate {args.rate:g} --seconds {args.seconds:g}"
        f" --warmup {args.warmup:g} --runs"
        f" {args.runs} --interval {args.interval:g} --size {args.size}`; {PARTITIONS} partitions,"
        f" a transaction per producer at most every {args.interval * 1000:g} ms, no work per record.",
        "",
        "| run | mode | producers | events/s | transactions/s | records per transaction | client CPU µs per event | broker CPU µs per event | client / broker CPU ms per transaction | transaction p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(
            f"| {i} | {r['mode']} | {r['producers']} | {r['events_per_s']:,} | {r['transactions_per_s']}"
            f" | {r['records_per_transaction']} | {r['client_cpu_us_per_event']} | {r['broker_cpu_us_per_event']}"
            f" | {r['client_cpu_ms_per_transaction']} / {r['broker_cpu_ms_per_transaction']}"
            f" | {r['transaction_ms_p50']} / {r['transaction_ms_p99']} |"
        )
    lines.append("")
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        if mine and all(r["broker_cpu_us_per_event"] is not None for r in mine):
            lines.append(
                f"- {mode}, medians: client {statistics.median(r['client_cpu_us_per_event'] for r in mine)}"
                f" and broker {statistics.median(r['broker_cpu_us_per_event'] for r in mine)} µs per event,"
                f" {statistics.median(r['transactions_per_s'] for r in mine)} transactions/s."
            )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=6300.0, help="events/s over all partitions")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode, alternated")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.02,
        help="least seconds between a producer's transactions",
    )
    parser.add_argument("--size", type=int, default=713, help="bytes per record")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    import uvloop

    from pipeline.config import Settings

    settings = Settings.from_env()
    order = [MODES[(i + i // 2) % 2] for i in range(2 * args.runs)]  # A B B A A B ...
    runs = []
    for mode in order:
        runs.append(uvloop.run(one_run(settings, mode, args)))
        print(runs[-1], flush=True)
    write_results(
        "txn-costs",
        args.label,
        {"args": vars(args), "runs": runs},
        _report(args, runs),
    )


if __name__ == "__main__":
    main()
