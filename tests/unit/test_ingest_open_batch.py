"""Records that arrive within `COMMIT_MIN_SECONDS` of a partition's previous transaction are
worked on at once into its open batch, and commit together (streams/ingest_partition.py).

What commits is what one batch of the same records would have committed (`IngestBatch.absorb`,
checked against a single batch), the alerts go out as each arrival is worked on, not at the
commit, and the open batch commits when it is due, and when the partition is revoked.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from pipeline.simulation.traffic import ATTACKS, generate
from streams import ingest_partition
from streams.ingest_batch import Ingest, IngestBatch, PartitionState
from tests.unit.test_ingest_batch import SETTINGS, Rec, records
from tests.unit.test_ingest_partition_order import SETTINGS as AT_LEAST_ONCE
from tests.unit.test_ingest_partition_order import Consumer, Producer

#: The states written with every transaction, as the writes below are compared per transaction
#: (their checkpoints: tests/unit/test_state_checkpoints.py), and no ledger snapshots (the one a
#: handover writes: tests/unit/test_handover_snapshot.py).
EVERY_TRANSACTION = AT_LEAST_ONCE.model_copy(
    update={"state_checkpoint_seconds": 0, "snapshot_seconds": 0}
)


def traffic() -> list[Rec]:
    """The simulator's mix with every attack, one record with a wrong key and one repeat."""
    events = [e for e, _ in generate(800, seed=4, attack_rate=0.02, attack_kinds=ATTACKS)]
    recs = records(events)
    recs.insert(300, Rec(b"wrong-key", orjson.dumps(events[0]), 0))
    recs.append(Rec(events[7]["account_id"].encode(), orjson.dumps(events[7]), 0))
    for i, rec in enumerate(recs):
        rec.offset = i
    return recs


#: 2026-12-03T06:00:00.000Z
FIXED_NS = 1_796_277_600_000 * 1_000_000


def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """One ingest time for every record, so that two runs' entries can be compared byte for byte.
    The clock `Ingest.now` reads is fixed, not the method replaced: the optional mypyc build
    compiles `Ingest`, whose methods cannot be replaced."""
    monkeypatch.setattr(time, "time_ns", lambda: FIXED_NS)
    assert Ingest(AT_LEAST_ONCE).now() == "2026-12-03T06:00:00.000Z"


def committed(out: IngestBatch) -> dict[str, Any]:
    """Everything a transaction of `out` writes, and what it counts."""
    return {
        "ledger": out.ledger,
        # a dead letter says when it was rejected: by the clock, not by the batch
        "deadletters": [
            (k, {f: x for f, x in orjson.loads(v or b"{}").items() if f != "rejected_at"})
            for k, v in out.deadletters
        ],
        "alerts": out.alerts,
        "accounts": out.account_records(),
        "alert_changes": out.alert_records(),
        "next_offset": out.next_offset,
        "counts": (out.consumed, out.accepted, out.duplicates, out.suspects, out.confirmed),
    }


@pytest.mark.parametrize("cuts", [[1], [400], [5, 6, 300, 301, 700], list(range(0, 802, 97))])
def test_absorbed_batches_commit_what_one_batch_of_their_records_would(
    monkeypatch: pytest.MonkeyPatch, cuts: list[int]
) -> None:
    fixed_clock(monkeypatch)
    recs = traffic()
    whole = Ingest(SETTINGS).batch(PartitionState(0, 7), recs)
    ingest, state = Ingest(SETTINGS), PartitionState(0, 7)
    bounds = [0, *cuts, len(recs)]
    parts = [ingest.batch(state, recs[a:b]) for a, b in itertools.pairwise(bounds)]
    opened = parts[0]
    for later in parts[1:]:
        opened.absorb(later)
    assert whole.alerts and whole.deadletters and whole.duplicates  # the mix covers them
    assert any(v is None for _, v in whole.alert_records()) or whole.alert_changes
    assert committed(opened) == committed(whole)


class Publisher:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, key: bytes, value: bytes, partition: int) -> None:
        self.published.append(value)

    async def delivered(self) -> None:
        pass


def writer(
    monkeypatch: pytest.MonkeyPatch, commit_min_seconds: float
) -> tuple[ingest_partition.PartitionIngest, Consumer, Publisher]:
    """A loaded partition writer (at least once, over fakes) with its loop running."""
    monkeypatch.setattr(ingest_partition, "COMMIT_MIN_SECONDS", commit_min_seconds)
    publisher = Publisher()
    monkeypatch.setattr(ingest_partition, "publisher", publisher)
    consumer = Consumer()
    service = SimpleNamespace(
        settings=EVERY_TRANSACTION,
        ingest=Ingest(AT_LEAST_ONCE),
        running_consumer=lambda: consumer,
        count=lambda out: None,
        pause=lambda tp: None,
        resume=lambda tp: None,
    )
    part = ingest_partition.PartitionIngest(service, TopicPartition(AT_LEAST_ONCE.actions_topic, 0))  # type: ignore[arg-type]
    part.state = PartitionState(0, AT_LEAST_ONCE.dedup_window_days)
    part.producer = Producer(AT_LEAST_ONCE.ledger_topic, ledger_fails=False)
    part.checked = True  # no state check against the ledger: the state starts empty
    part._task = asyncio.ensure_future(part._run())
    return part, consumer, publisher


async def worked_through(part: ingest_partition.PartitionIngest, offset: int) -> None:
    """Until the writer has worked on every record before `offset` (no clock involved)."""
    for _ in range(10_000):
        if part.state is not None and part.state.next_offset >= offset and not part.pending:
            for _ in range(50):  # and has finished with them (published, committed if due)
                await asyncio.sleep(0)
            return
        await asyncio.sleep(0)
    raise AssertionError(f"offset {offset} not reached")


def test_arrivals_within_the_interval_are_worked_on_at_once_and_commit_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()
    alerting = Ingest(SETTINGS).batch(PartitionState(0, 7), recs).alerts
    assert alerting

    async def run() -> None:
        part, consumer, publisher = writer(monkeypatch, commit_min_seconds=3600)
        part.feed(recs[:100])  # the first transaction is due at once
        await worked_through(part, 100)
        assert consumer.commits == [{part.tp: 100}] and part.open is None
        for a, b in ((100, 350), (350, 600), (600, len(recs))):
            part.feed(recs[a:b])
            await worked_through(part, b)
        # worked on, every alert published, nothing more committed until the interval is up
        assert consumer.commits == [{part.tp: 100}]
        assert part.open is not None and part.open.consumed == len(recs) - 100
        assert [orjson.loads(v) for v in publisher.published] == [
            orjson.loads(v) for _, v, _ in alerting
        ]
        await part.close()  # revoked: the open batch commits first
        assert consumer.commits == [{part.tp: 100}, {part.tp: len(recs)}]
        assert part.open is None

    asyncio.run(run())


def test_without_an_interval_each_arrival_commits_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        part, consumer, _ = writer(monkeypatch, commit_min_seconds=0)
        for a, b in ((0, 100), (100, 350), (350, len(recs))):
            part.feed(recs[a:b])
            await worked_through(part, b)
        assert consumer.commits == [{part.tp: 100}, {part.tp: 350}, {part.tp: len(recs)}]
        assert part.open is None and not part.in_batch
        await part.close()
        assert len(consumer.commits) == 3

    asyncio.run(run())
