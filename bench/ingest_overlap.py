"""The partition loop alone (streams/ingest_partition.py), with and without `OVERLAP_COMMITS`:
four partition writers on this process's event loop over a fake transactional producer whose
broker round trips are fixed sleeps, fed the benchmark's mix either at a fixed rate (how long a
record waits from its fetch until it is worked on, its alerts published) or all at once (how
long the backlog takes, and the CPU per event). The broker costs no CPU here, and a round trip
is exactly `--rtt-ms`: what is left is how the loop schedules work around commits.

    python -m bench.ingest_overlap [--rate 2000] [--seconds 10] [--rtt-ms 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.workload import RESULTS, stream
from pipeline.config import Settings
from streams import ingest_partition
from streams.ingest_batch import Ingest, PartitionState

SETTINGS = Settings.from_env({"PW_SNAPSHOT_SECONDS": "0"})
PARTITIONS = 4


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int = 0


class _Batch:
    def __init__(self) -> None:
        self.records = 0

    def append(self, key: bytes | None, value: bytes | None, timestamp: None) -> object:
        self.records += 1
        return object()


class Broker:
    """A transactional producer whose requests each take one round trip: AddPartitionsToTxn
    with the first send, Produce, AddOffsetsToTxn and TxnOffsetCommit, EndTxn."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.transactions = 0
        self._added = False

    async def _trip(self) -> None:
        await asyncio.sleep(self.rtt)

    async def begin_transaction(self) -> None:
        self._added = False

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        first = not self._added
        self._added = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        loop.call_later(
            self.rtt * (2 if first else 1), future.set_result, SimpleNamespace(offset=0)
        )
        return future

    async def send_offsets_to_transaction(self, offsets: Any, group: str) -> None:
        await self._trip()
        await self._trip()

    async def commit_transaction(self) -> None:
        await self._trip()
        self.transactions += 1

    async def abort_transaction(self) -> None:
        await self._trip()

    async def stop(self) -> None:
        pass


class _Publisher:
    async def publish(self, key: bytes, value: bytes, partition: int) -> None:
        pass

    async def delivered(self) -> None:
        pass


def _partition_of(key: bytes) -> int:
    return hashlib.blake2b(key, digest_size=2).digest()[0] % PARTITIONS


async def _run(
    overlap: bool, messages: list[tuple[bytes, bytes]], rate: float | None, rtt: float
) -> dict[str, Any]:
    ingest_partition.OVERLAP_COMMITS = overlap
    ingest_partition.publisher = _Publisher()  # type: ignore[assignment]
    service = SimpleNamespace(
        settings=SETTINGS,
        ingest=Ingest(SETTINGS),
        count=lambda out: None,
        pause=lambda tp: None,
        resume=lambda tp: None,
        note_error=lambda e: None,
        note_recovered=lambda: None,
    )
    fed: dict[tuple[int, int], float] = {}
    worked: dict[tuple[int, int], float] = {}
    work = ingest_partition.PartitionIngest._work

    async def timed(self: ingest_partition.PartitionIngest, records: list[Any]) -> None:
        await work(self, records)
        now = time.monotonic()
        for r in records:
            worked[(self.tp.partition, r.offset)] = now

    ingest_partition.PartitionIngest._work = timed  # type: ignore[method-assign]
    parts, brokers = [], []
    for p in range(PARTITIONS):
        part = ingest_partition.PartitionIngest(service, TopicPartition(SETTINGS.actions_topic, p))  # type: ignore[arg-type]
        part.state = PartitionState(p, SETTINGS.dedup_window_days)
        broker = Broker(rtt)
        part.producer = broker
        part.checked = True
        part._task = asyncio.ensure_future(part._run())
        parts.append(part)
        brokers.append(broker)
    offsets = [0] * PARTITIONS
    recs: list[tuple[int, Rec]] = []
    for key, value in messages:
        p = _partition_of(key)
        recs.append((p, Rec(key, value, offsets[p])))
        offsets[p] += 1
    cpu0, started = time.process_time(), time.monotonic()
    step = 0.005
    chunk = len(recs) if rate is None else max(1, round(rate * step))
    for i in range(0, len(recs), chunk):
        if rate is not None:
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        now = time.monotonic()
        by_part: dict[int, list[Rec]] = {}
        for p, rec in recs[i : i + chunk]:
            by_part.setdefault(p, []).append(rec)
            fed[(p, rec.offset)] = now
        for p, batch in by_part.items():
            parts[p].feed(batch)
    while any(p.state is not None and p.state.next_offset < offsets[p.tp.partition] for p in parts):
        await asyncio.sleep(0.001)
    worked_at = time.monotonic()
    for part in parts:
        await part.close()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu0
    ingest_partition.PartitionIngest._work = work  # type: ignore[method-assign]
    waits = sorted((worked[k] - fed[k]) * 1000 for k in fed)
    q = statistics.quantiles(waits, n=100, method="inclusive")
    return {
        "overlap": overlap,
        "events": len(recs),
        "events_per_second": round(len(recs) / (worked_at - started)),
        "cpu_us_per_event": round(cpu / len(recs) * 1e6, 1),
        "transactions": sum(b.transactions for b in brokers),
        "worked_ms_p50": round(q[49], 1),
        "worked_ms_p99": round(q[98], 1),
        "elapsed_s": round(elapsed, 2),
    }


def _runs(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    count = int(args.rate * args.seconds) if args.rate else args.count
    messages = stream(count, seed=5)
    asyncio.run(
        _run(True, stream(3_000, seed=6), None, args.rtt_ms / 1000)
    )  # warm-up: imports, caches
    for run in range(args.runs):
        for overlap in (False, True) if run % 2 == 0 else (True, False):
            figures = asyncio.run(_run(overlap, messages, args.rate or None, args.rtt_ms / 1000))
            figures["run"] = run
            print(orjson.dumps(figures).decode(), flush=True)
            yield figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000.0, help="0: all at once (a backlog)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=50_000, help="events of a backlog run")
    parser.add_argument("--rtt-ms", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="", help="a file name under bench/results/ (.json)")
    args = parser.parse_args()
    results = list(_runs(args))
    summary = {}
    for overlap in (False, True):
        rows = [r for r in results if r["overlap"] is overlap]
        summary["overlap" if overlap else "sequential"] = {
            k: statistics.median(r[k] for r in rows)
            for k in (
                "events_per_second",
                "cpu_us_per_event",
                "transactions",
                "worked_ms_p50",
                "worked_ms_p99",
            )
        }
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if args.out:
        (RESULTS / args.out).write_bytes(
            orjson.dumps(
                {"args": vars(args), "runs": results, "medians": summary},
                option=orjson.OPT_INDENT_2,
            )
            + b"\n"
        )


if __name__ == "__main__":
    main()
