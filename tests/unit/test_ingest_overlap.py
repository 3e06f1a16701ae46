"""A partition works on its next records while its previous batch's transaction is in flight
(streams/ingest_partition.py, `OVERLAP_COMMITS`, switched on here): one transaction in flight and one open batch
at most, the next transaction begun only once the previous one committed, and each writing what
its batch made, encoded before anything later was worked on. A transaction that fails takes the
work done meanwhile with it (the partition starts over); a close waits for the one in flight,
then commits the open batch."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from streams import ingest_partition
from streams.ingest_batch import Ingest, IngestBatch, PartitionState
from tests.unit.test_ingest_batch import SETTINGS, Rec
from tests.unit.test_ingest_open_batch import Publisher, fixed_clock, traffic, worked_through
from tests.unit.test_ingest_partition_order import Batch

assert SETTINGS.processing_guarantee == "exactly_once"
#: The states written with every transaction, as the writes below are compared per transaction
#: (their checkpoints: tests/unit/test_state_checkpoints.py), and no ledger snapshots (the one a
#: handover writes: tests/unit/test_handover_snapshot.py).
EVERY_TRANSACTION = SETTINGS.model_copy(
    update={"state_checkpoint_seconds": 0, "snapshot_seconds": 0}
)


class TxnProducer:
    """A transactional producer over fakes: what each transaction wrote. A transaction waits at
    its start until `gate` is set; its commit fails while `fail_commit`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_commit = False
        self.log: list[str] = []
        #: per transaction: topic -> records, and the source offsets it commits
        self.transactions: list[dict[str, Any]] = []
        self._ends: dict[str, int] = {}

    async def begin_transaction(self) -> None:
        self.log.append("begin")
        self.transactions.append({})
        await self.gate.wait()

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        self.transactions[-1].setdefault(topic, []).extend(batch.records)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=self._ends.get(topic, 0)))
        self._ends[topic] = self._ends.get(topic, 0) + len(batch.records)
        return future

    async def send_offsets_to_transaction(self, offsets: dict[Any, Any], group: str) -> None:
        self.transactions[-1]["offsets"] = {tp.partition: o.offset for tp, o in offsets.items()}

    async def commit_transaction(self) -> None:
        await asyncio.sleep(0)
        if self.fail_commit:
            raise RuntimeError("the transaction did not commit")
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.log.append("abort")

    async def stop(self) -> None:
        self.log.append("stop")


def writes(out: IngestBatch) -> dict[str, Any]:
    """What a transaction of `out` writes, encoded now (dead letters without their clock)."""
    return {
        SETTINGS.ledger_topic: out.ledger,
        SETTINGS.deadletter_topic: [
            (k, {f: x for f, x in orjson.loads(v or b"{}").items() if f != "rejected_at"})
            for k, v in out.deadletters
        ],
        SETTINGS.account_state_topic: out.account_records(),
        SETTINGS.open_alerts_topic: out.alert_records(),
        "offsets": {0: out.next_offset},
    }


def written(transaction: dict[str, Any]) -> dict[str, Any]:
    out = {
        topic: transaction.get(topic, [])
        for topic in (
            SETTINGS.ledger_topic,
            SETTINGS.account_state_topic,
            SETTINGS.open_alerts_topic,
        )
    }
    out[SETTINGS.deadletter_topic] = [
        (k, {f: x for f, x in orjson.loads(v or b"{}").items() if f != "rejected_at"})
        for k, v in transaction.get(SETTINGS.deadletter_topic, [])
    ]
    out["offsets"] = transaction["offsets"]
    return out


def txn_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[ingest_partition.PartitionIngest, TxnProducer, Publisher, list[str]]:
    """A loaded partition writer (exactly once, over fakes, every batch due at once) with its
    loop running; the last list notes each start-over after a failure."""
    monkeypatch.setattr(ingest_partition, "COMMIT_MIN_SECONDS", 0)
    monkeypatch.setattr(ingest_partition, "OVERLAP_COMMITS", True)
    publisher = Publisher()
    monkeypatch.setattr(ingest_partition, "publisher", publisher)
    errors: list[str] = []
    service = SimpleNamespace(
        settings=EVERY_TRANSACTION,
        ingest=Ingest(SETTINGS),
        count=lambda out: None,
        pause=lambda tp: None,
        resume=lambda tp: None,
        note_error=errors.append,
        note_recovered=lambda: None,
    )
    part = ingest_partition.PartitionIngest(service, TopicPartition(SETTINGS.actions_topic, 0))  # type: ignore[arg-type]
    part.state = PartitionState(0, SETTINGS.dedup_window_days)
    producer = TxnProducer()
    part.producer = producer  # type: ignore[assignment]
    part.checked = True  # no state check against the ledger: the state starts empty
    taken_up: list[str] = []

    async def take_up() -> None:  # the reload, as `_load` leaves the partition
        taken_up.append("reloaded")
        part.pending = []
        part.state = PartitionState(0, SETTINGS.dedup_window_days)

    monkeypatch.setattr(part, "_take_up", take_up)
    part._task = asyncio.ensure_future(part._run())
    return part, producer, publisher, taken_up


async def until(condition: Any) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


def test_records_are_worked_on_while_the_previous_transaction_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fixed_clock(monkeypatch)
    recs: list[Rec] = traffic()
    cuts = ((0, 100), (100, 350))
    ingest, state = Ingest(SETTINGS), PartitionState(0, SETTINGS.dedup_window_days)
    expected, alerts = [], []
    for a, b in cuts:  # one batch after the other, each encoded before the next is worked on
        out = ingest.batch(state, recs[a:b])
        expected.append(writes(out))
        alerts += [orjson.loads(v) for _, v, _ in out.alerts]
    assert all(e[SETTINGS.account_state_topic] for e in expected) and alerts

    async def run() -> None:
        part, producer, publisher, _ = txn_writer(monkeypatch)
        producer.gate.clear()  # the first transaction stays in flight
        part.feed(recs[:100])
        await until(lambda: producer.log == ["begin"])
        part.feed(recs[100:350])
        await worked_through(part, 350)
        # worked on (alerts out) meanwhile, into the open batch; no second transaction yet
        assert producer.log == ["begin"]
        assert part.open is not None and part.open.consumed == 250
        assert [orjson.loads(v) for v in publisher.published] == alerts
        producer.gate.set()
        await until(lambda: producer.log.count("commit") == 2)
        assert producer.log == ["begin", "commit", "begin", "commit"]
        assert [written(t) for t in producer.transactions] == expected
        assert part.state is not None and part.state.ledger.ledger_end == len(
            expected[0][SETTINGS.ledger_topic]
        ) + len(expected[1][SETTINGS.ledger_topic])
        await part.close()
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]

    asyncio.run(run())


def test_a_failed_transaction_in_flight_drops_what_was_worked_on_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        part, producer, _, taken_up = txn_writer(monkeypatch)
        producer.gate.clear()
        producer.fail_commit = True
        part.feed(recs[:100])
        await until(lambda: producer.log == ["begin"])
        part.feed(recs[100:350])
        await worked_through(part, 350)
        assert part.open is not None
        producer.gate.set()
        await until(lambda: taken_up)
        # aborted; the open batch went with the state; no transaction began before the reload
        assert producer.log == ["begin", "abort"]
        assert taken_up == ["reloaded"] and part.open is None and not part.in_batch
        assert part.state is not None and part.state.next_offset == 0
        producer.fail_commit = False
        part.feed(recs[:50])  # from the committed position again
        await until(lambda: "commit" in producer.log)
        assert producer.log == ["begin", "abort", "begin", "commit"]
        assert producer.transactions[-1]["offsets"] == {0: 50}
        await part.close()

    asyncio.run(run())


def test_off_each_transaction_commits_before_the_next_records_are_worked_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        part, producer, _, _ = txn_writer(monkeypatch)
        monkeypatch.setattr(ingest_partition, "OVERLAP_COMMITS", False)
        producer.gate.clear()
        part.feed(recs[:100])
        await until(lambda: producer.log == ["begin"])
        part.feed(recs[100:350])
        for _ in range(200):
            await asyncio.sleep(0)
        assert part.state is not None and part.state.next_offset == 100  # not worked on yet
        producer.gate.set()
        await worked_through(part, 350)
        await until(lambda: producer.log.count("commit") == 2)
        assert [t["offsets"] for t in producer.transactions] == [{0: 100}, {0: 350}]
        await part.close()

    asyncio.run(run())


def test_a_close_waits_for_the_transaction_in_flight_then_commits_the_open_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recs = traffic()

    async def run() -> None:
        part, producer, _, _ = txn_writer(monkeypatch)
        producer.gate.clear()
        part.feed(recs[:100])
        await until(lambda: producer.log == ["begin"])
        part.feed(recs[100:350])
        await worked_through(part, 350)
        assert part.in_batch
        closing = asyncio.ensure_future(part.close())
        for _ in range(100):
            await asyncio.sleep(0)
        assert not closing.done() and producer.log == ["begin"]
        producer.gate.set()
        await closing
        assert producer.log == ["begin", "commit", "begin", "commit", "stop"]
        assert [t["offsets"] for t in producer.transactions] == [{0: 100}, {0: 350}]
        assert part.open is None and not part.in_batch

    asyncio.run(run())


def _transaction_samples() -> tuple[float, float]:
    """(count, sum) of `pw_ingest_transaction_seconds` so far (the registry is process-wide)."""
    count = REGISTRY.get_sample_value("pw_ingest_transaction_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("pw_ingest_transaction_seconds_sum") or 0.0
    return count, total


def test_each_committed_transaction_is_timed_from_its_start_to_its_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pw_ingest_transaction_seconds` observes a transaction once it has committed, from its
    start (the time its start waited, here at the held gate, included); an aborted one is not
    observed."""
    recs = traffic()

    async def run() -> None:
        part, producer, _, taken_up = txn_writer(monkeypatch)
        count0, sum0 = _transaction_samples()
        producer.gate.clear()
        part.feed(recs[:100])
        await until(lambda: producer.log == ["begin"])
        held_from = time.monotonic()  # the transaction started before this
        await asyncio.sleep(0.05)  # the transaction waits at its start
        held = time.monotonic() - held_from
        producer.gate.set()
        await until(lambda: "commit" in producer.log)
        await until(lambda: _transaction_samples()[0] == count0 + 1)
        count1, sum1 = _transaction_samples()
        # At least the time it was held, as measured here: not the 0.05 asked, which a loop's
        # timer may cut short (uvloop's count from the start of the loop's turn; in a run of
        # tests/unit this observed 0.04997 s).
        assert 0.04 < held <= sum1 - sum0 < 5
        producer.fail_commit = True  # a transaction that aborts is not counted
        part.feed(recs[100:200])
        await until(lambda: taken_up)
        assert "abort" in producer.log and _transaction_samples() == (count1, sum1)
        await part.close()

    asyncio.run(run())
