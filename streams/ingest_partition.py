"""One partition's writer in the ingest service (streams/ingest.py says how the service works):
its state loaded from Kafka, its records worked through in offset order one batch (one
transaction) at a time, and its restart after a failed batch.

Records are worked on as soon as they are fetched (their alerts published at once), but a
partition starts a transaction at most every `COMMIT_MIN_SECONDS`: what arrives sooner after the
previous one's start is worked on into the open batch, which commits when that time is up (or
when it holds `MAX_BATCH` records, or the partition is revoked). Under live traffic a fetch
brings a few records per partition, and one transaction each (five broker round trips, and the
client's and the broker's CPU for them) made the worker fall behind at half its maximum rate;
a partition that is idle, or busy for longer than that time per batch (a backlog), commits each
batch at once as before (docs/performance.md, "Event-to-alert latency").

A transaction writes the states its batch changed only when it is a state checkpoint (every
`PW_STATE_CHECKPOINT_SECONDS`, with every ledger snapshot, with the state check's repairs, and
the last one before the partition is closed); until then they wait in the partition's state
(`PartitionState.unwritten_accounts`, `unwritten_alerts`), and a partition with no records
commits a transaction for them alone when they are due. A checkpoint writes each of them as it
is then, and the source offset they stand at (`ledger_snapshot.checkpoint_record`); a load folds
the ledger entries from that offset on into the states (`load_state`). At live rates each small
transaction wrote every account it touched whole, about 4.8 KB, on the event loop and on the
alerts' path (docs/performance.md, "State checkpoints").

With `OVERLAP_COMMITS` (on by default), a batch's transaction does not hold up the
partition's next records: everything it writes is encoded when it starts (`_Transaction`: the
state records from the state as it is after the batch, which is done in either mode), and while
it is in flight the records that arrive are worked on into the next open batch, whose transaction begins only once the previous one has committed (one transaction in
flight and one open batch per partition at most). A batch that writes a ledger snapshot, and
the last one before the partition is closed, are committed before anything else is worked on.
A transaction that fails is aborted and the partition starts over (the work done meanwhile is
dropped with the state it changed)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from pipeline import floors, ledger_snapshot
from pipeline.config import Settings
from pipeline.ledger_snapshot import SnapshotWriter
from sinks import metrics
from sinks.kafka_io import aio_batch_producer
from streams import dedup_confirm, state_repair
from streams.alert_publisher import publisher
from streams.ingest_batch import IngestBatch, PartitionState, Record, state_record
from streams.partition_read import read_partition
from streams.state_repair import Repairs

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel
    from streams.ingest import IngestService

log = structlog.get_logger(__name__)

#: Records a partition takes into one batch (one transaction) at most, and records fetched for
#: it but not yet worked on beyond which its fetching pauses (it resumes below half of that).
#: Two batches: the next one is fetched while one is worked on. (20,000 held about 70,000
#: records, 50 MiB of Python objects, over 4 partitions in a backlog, and Python's allocator
#: keeps its peak: docs/performance.md, "Where the worker's memory goes".)
MAX_BATCH = 5_000
MAX_PENDING = 2 * MAX_BATCH
#: Events of a batch after which the alerts raised so far are published (and other work runs).
PUBLISH_EVERY = 200
#: Least time between the starts of two transactions of a partition: records that arrive sooner
#: are worked on (their alerts published) into the open batch, which commits when it is up.
COMMIT_MIN_SECONDS = 0.02
#: Work on a partition's next records while its previous batch's transaction is in flight
#: (False: each transaction is awaited before anything else is worked on). On: a transaction
#: took 82-159 ms p50 at 3,000 events/s (a trace of the loop; its round trips 5-10 ms each, the
#: rest waiting for the one event loop), and the partition's next records no longer wait for it.
#: With the bench's load sent by a producer that costs a third of the CPU it did, alerts came
#: sooner in 5 of 6 interleaved pairs at 1,500 and 3,000 events/s, the per-account ones 2.6-4.4x
#: (docs/performance.md, "Overlapping a transaction with the next records").
OVERLAP_COMMITS = True
#: How often a partition in bounded dedup mode asks the warehouse how far its loader stored the
#: ledger (to move exact ids into the filters).
SEAL_SECONDS = 5.0
#: Backoff between attempts to restart a partition whose batch failed (doubling).
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.5, 30.0
#: How long a close waits for a transaction that carries only the handover's snapshot (every state
#: written, no batch in hand): a broker that does not answer must not hold a stop or a rebalance
#: for it. The next owner reads the ledger after the last snapshot instead; nothing is lost.
HANDOVER_SNAPSHOT_SECONDS = 10.0


async def load_state(
    s: Settings, partition: int, model: BehaviourModel | None = None
) -> tuple[PartitionState, SnapshotWriter]:
    """One partition's state from its ledger snapshot and the ledger after it (or the whole
    ledger partition, without a usable snapshot) and its state topic partitions (committed
    records). The ledger entries after the last state checkpoint (`ledger_snapshot.checkpoint_of`)
    are folded into their accounts' states as they are read (`PartitionState.fold_entry`, with
    `model` as the behaviour model): a checkpoint is written with every ledger snapshot, so
    they are all after the snapshot."""
    started = time.monotonic()
    state = PartitionState(partition, s.dedup_window_days, s.dedup_exact_seconds, s.dedup_filter_mb)
    writer = SnapshotWriter()

    async def read(topic: str, load: Any, start: int | None = None) -> int:
        count = 0
        async for record in read_partition(topic, partition, start, None):
            load(record)
            count += 1
        return count

    # The snapshot and the state topics side by side, then the ledger after the snapshot.
    snapshot: list[tuple[bytes | None, bytes | None]] = []
    _, accounts, alerts = await asyncio.gather(
        read(s.ledger_snapshot_topic, lambda r: snapshot.append((r.key, r.value))),
        read(s.account_state_topic, lambda r: state.load_account(r.key, r.value)),
        read(s.open_alerts_topic, lambda r: state.load_alert(r.key, r.value)),
    )
    start: int | None = None
    fold_from = ledger_snapshot.checkpoint_of(snapshot)
    try:
        loaded = ledger_snapshot.load(
            snapshot, s.dedup_window_days, s.dedup_exact_seconds, s.dedup_filter_mb
        )
    except (ledger_snapshot.Unusable, ValueError, KeyError) as exc:
        log.warning("ingest.snapshot_unusable", partition=partition, error=str(exc))
        loaded = None
    if loaded is not None:
        state.ledger, writer = loaded
        start = state.ledger.ledger_end
    snapshot.clear()
    last = -1

    folded = 0
    config = s.detect

    def entry(record: Any) -> None:
        nonlocal last, folded
        if state.load_ledger(record.value, config, model, fold_from):
            folded += 1
        last = record.offset

    entries = await read(s.ledger_topic, entry, start)
    state.ledger.committed(last + 1)
    metrics.STATE_LOAD_LEDGER_ENTRIES.inc(entries)
    metrics.STATE_LOAD_FOLDED.inc(folded)
    log.info(
        "ingest.state_loaded",
        partition=partition,
        snapshot=loaded is not None,
        ledger_from=start or 0,
        entries=entries,
        checkpoint=fold_from,
        folded=folded,
        accounts=len(state.accounts),
        open_alerts=len(state.open_alerts),
        changelog_records=accounts + alerts,
        seconds=round(time.monotonic() - started, 3),
    )
    return state, writer


class PartitionIngest:
    """The one writer of one partition: its state, its producer, its records in hand."""

    def __init__(self, service: IngestService, tp: TopicPartition) -> None:
        self.service = service
        self.tp = tp
        self.state: PartitionState | None = None
        self.snapshots = SnapshotWriter()
        self._snapshot_at = time.monotonic()
        self._sealed_at = 0.0
        #: the loaded state was checked against the ledger (at the partition's first batch)
        self.checked = False
        self.producer: AIOKafkaProducer | None = None
        self.pending: list[Any] = []
        self.paused = False
        #: the state is being loaded: what the consumer delivers meanwhile is dropped (the load
        #: ends with a seek to where the ledger says), and the partition's fetching is paused
        self.loading = False
        self.closing = False
        #: records are being worked on or committed (revocation waits for them)
        self._working = False
        #: the batch worked on and not yet committed (records, state changes, alerts published)
        self.open: IngestBatch | None = None
        #: the previous batch's transaction while it is in flight (`_commit`)
        self._flight: asyncio.Future[None] | None = None
        self.repairs: Repairs | None = None
        #: when the last transaction started (`time.monotonic()`)
        self._committed_at = -COMMIT_MIN_SECONDS
        #: when the last transaction that wrote the unwritten states started
        self._checkpoint_at = time.monotonic()
        self.batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def in_batch(self) -> bool:
        """A batch is being worked on, open, or committing (revocation waits for it to commit)."""
        return self._working or self.open is not None or self._flight is not None

    def _unwritten(self) -> bool:
        """The loaded state holds changes the state topics do not have yet."""
        state = self.state
        return (
            state is not None
            and not self.loading
            and bool(state.unwritten_accounts or state.unwritten_alerts)
        )

    def _stale_snapshot(self) -> bool:
        """Snapshots are on and the loaded ledger moved on since the last one written or loaded
        (a handover then writes one: `_transaction`)."""
        state = self.state
        return (
            bool(self.service.settings.snapshot_seconds)
            and state is not None
            and not self.loading
            and state.ledger.ledger_end != self.snapshots.ledger_end
        )

    def _checkpoint_in(self) -> float:
        """Seconds until the unwritten states are due to be written (<= 0: now)."""
        every = self.service.settings.state_checkpoint_seconds
        return self._checkpoint_at + every - time.monotonic()

    @property
    def transactional(self) -> bool:
        return self.service.settings.processing_guarantee == "exactly_once"

    def start(self) -> None:
        """Take the partition on: load it, then work through what the consumer fetches for it
        (records fetched meanwhile wait in `pending`)."""
        self._task = asyncio.ensure_future(self._main())

    async def _main(self) -> None:
        await self._take_up()
        self.service.loaded(self)
        await self._run()

    async def _load(self) -> None:
        """Fence older producers of the partition, load its state, seek to where the ledger says."""
        s = self.service.settings
        self.pending = []
        self.loading = True
        self.state = None  # a failed batch's state is not written: the load folds it again
        floors.clear_all()  # nor kept alive by the sweeps' floors (pipeline/floors.py)
        if self.transactional:
            producer = aio_batch_producer(
                s,
                role=f"ingest-{self.tp.partition}",
                transactional_id=s.ingest_transactional_id(self.tp.partition),
            )
            await producer.start()  # InitProducerId: any older producer of this id is fenced now
            self.producer = producer
        else:
            self.producer = self.service.shared_producer
        # the fold at load detects with the model the worker uses (once its first look at the
        # model directory ended), as the events were detected before the restart
        model = await self.service.loaded_model()
        self.state, self.snapshots = await load_state(s, self.tp.partition, model)
        self._snapshot_at = self._checkpoint_at = time.monotonic()
        self.checked = False
        consumer = self.service.running_consumer()
        committed = await consumer.committed(self.tp) or 0
        position = max(committed, self.state.next_offset)
        if self.state.next_offset > committed:
            metrics.INGEST_CATCH_UP.inc(self.state.next_offset - committed)
            log.warning(
                "ingest.position_from_ledger",
                partition=self.tp.partition,
                group_committed=committed,
                ledger_next=self.state.next_offset,
            )
        if not position:
            position = (await consumer.beginning_offsets([self.tp]))[self.tp]
        # From here on the consumer delivers records from `position` only (aiokafka drops what
        # it holds or fetched for an older position); nothing in between awaits.
        consumer.seek(self.tp, position)
        self.pending = []
        self.loading = False
        self.state.ledger.next_offset = position
        if self.paused:  # paused while records piled up during the load: they are gone now
            self.service.resume(self.tp)
            self.paused = False
        log.info("ingest.partition_ready", partition=self.tp.partition, position=position)

    def feed(self, records: list[Any]) -> None:
        if self.closing:
            return
        if self.loading:  # fetched for a position the load's seek is about to move: not kept
            if not self.paused:
                self.service.pause(self.tp)
                self.paused = True
            return
        self.pending.extend(records)
        self._wake.set()
        if len(self.pending) >= MAX_PENDING and not self.paused:
            self.service.pause(self.tp)
            self.paused = True

    async def close(self) -> None:
        """Finish the batch in hand (its transaction commits), drop the rest, stop the producer."""
        self.closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            finish = self.in_batch or self._unwritten()
            snapshot_only = not finish and self._stale_snapshot()
            if not finish and not snapshot_only:
                # loading, waiting to retry, or idle with every state written and the last
                # snapshot current: nothing to finish
                task.cancel()
            try:
                if snapshot_only:
                    await asyncio.wait_for(asyncio.shield(task), HANDOVER_SNAPSHOT_SECONDS)
                else:
                    await asyncio.shield(task)
            except TimeoutError:
                log.warning(
                    "ingest.handover_snapshot_abandoned",
                    partition=self.tp.partition,
                    seconds=HANDOVER_SNAPSHOT_SECONDS,
                )
                task.cancel()  # its transaction is aborted (or fenced by the next owner)
                with contextlib.suppress(asyncio.CancelledError, Exception):  # TimeoutError too
                    await asyncio.wait_for(asyncio.shield(task), HANDOVER_SNAPSHOT_SECONDS)
            except asyncio.CancelledError:
                pass
            except Exception:  # its failure was logged where it happened
                log.exception("ingest.partition_loop_failed", partition=self.tp.partition)
        self.pending = []
        if self.transactional and self.producer is not None:
            await self.producer.stop()
        self.producer = None

    async def _run(self) -> None:
        while not self.closing:
            if self.pending and self._room():
                pass  # left over from a full batch: on at once
            elif self.open is None and self._flight is None and self._unwritten():
                # idle with states the state topics do not have: written when they are due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, self._checkpoint_in()))
            elif self.open is None or self._flight is not None:
                # records, the transaction in flight done (it wakes the loop), or a close
                await self._wake.wait()
            else:  # records arriving meanwhile are worked on; the open batch commits when due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._due_in() if self._room() else 0)
            self._wake.clear()
            try:
                self._landed()
                while self.pending and not self.closing and self._room():
                    records = self.pending[: self._room()]
                    self.pending = self.pending[len(records) :]
                    if self.paused and len(self.pending) < MAX_PENDING // 2:
                        self.service.resume(self.tp)
                        self.paused = False
                    await self._marked(self._work(records))
                    self._landed()
                if self.closing or (self._flight is not None and not self._room()):
                    await self._marked(self._settle())
                if self._flight is None and (self.closing or self._checkpoint_in() <= 0):
                    self._open_for_states()  # no records for a while, or handed over
                if (
                    self.open is not None
                    and self._flight is None
                    and (self.closing or not self._room() or self._due_in() <= 0)
                ):
                    await self._marked(self._commit())
            except ProducerFenced:
                self._fenced()
                self.closing = True
                self.open = None
                await self._drop_flight()
                return
            except Exception as exc:  # a failed batch: abort, and start the partition over
                self._failed(exc, "ingest.batch_failed")
                # what was worked on after the failed transaction goes with the state it changed
                # (dropped now: a close meanwhile has nothing to write, the load folds it again)
                self.open = self.repairs = self.state = None
                await self._drop_flight()
                await self._take_up()
                self.service.note_recovered()
        if self._unwritten() or self._stale_snapshot():
            # closed while a transaction that was no checkpoint was awaited (`OVERLAP_COMMITS`
            # off): the states and a snapshot go before the partition does
            try:
                await self._marked(self._settle())
                self._open_for_states()
                await self._marked(self._commit())
            except ProducerFenced:
                self._fenced()
            except Exception as exc:  # the next owner's load folds the ledger after the mark
                self._failed(exc, "ingest.final_checkpoint_failed")

    def _open_for_states(self) -> None:
        """With no batch open or in flight and states the state topics lack (or, at a handover,
        a snapshot behind the ledger): open an empty batch, so that the next commit is a
        transaction for them alone."""
        state = self.state
        due = self._unwritten() or (self.closing and self._stale_snapshot())
        if self.open is None and self._flight is None and due and state is not None:
            self.open = IngestBatch(self.tp.partition, next_offset=state.ledger.next_offset)

    def _fenced(self) -> None:
        log.error("ingest.fenced", partition=self.tp.partition)
        self.service.note_error(f"partition {self.tp.partition}: fenced by a newer producer")

    def _failed(self, exc: Exception, event: str) -> None:
        self.service.note_error(f"partition {self.tp.partition}: {type(exc).__name__}: {exc}")
        log.exception(event, partition=self.tp.partition)

    def _room(self) -> int:
        """How many more records the open batch takes."""
        return MAX_BATCH - (self.open.consumed if self.open is not None else 0)

    def _due_in(self) -> float:
        """Seconds until the open batch may commit (<= 0: now)."""
        return self._committed_at + COMMIT_MIN_SECONDS - time.monotonic()

    async def _marked(self, step: Any) -> None:
        self._working = True
        try:
            await step
        finally:
            self._working = False

    async def _batch(self, records: list[Any]) -> None:
        """Work on `records` and commit them (with whatever the open batch held) at once."""
        await self._work(records)
        await self._commit()
        await self._settle()

    def _landed(self) -> None:
        """Done with the transaction in flight once it has committed; raises its failure."""
        flight = self._flight
        if flight is not None and flight.done():
            self._flight = None
            flight.result()

    async def _settle(self) -> None:
        """Wait for the transaction in flight to commit; raises its failure."""
        flight = self._flight
        if flight is not None:
            try:
                await asyncio.shield(flight)
            finally:
                if flight.done():
                    self._flight = None
            flight.result()

    async def _drop_flight(self) -> None:
        """After a failure: wait for the transaction in flight to end, whatever its outcome
        (a failure of its own was logged where it happened; the partition starts over)."""
        flight, self._flight = self._flight, None
        if flight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(flight)

    async def _work(self, records: list[Any]) -> None:
        """Sequence and detect `records` into the open batch (opened if none is), publishing
        the alerts they raise; their writes wait for `_commit`."""
        state = self.state
        if state is None or self.producer is None:
            raise RuntimeError(f"partition {self.tp.partition} is not loaded")
        p = self.tp.partition
        if not self.checked and self.repairs is None:
            # Before any event of the partition is detected: each account's loaded state must be
            # at its ledger head (streams/state_repair.py); what was rebuilt commits with this batch.
            self.repairs = await state_repair.check_partition(state)
        await self._seal(state)
        ingest = self.service.ingest
        decoded = ingest.decode(state, records)
        seen: set[tuple[str, str]] = set()
        if decoded.suspects:  # the filters may hold them: only the warehouse can say
            seen = await dedup_confirm.seen_in_window(
                decoded.suspects, state.ledger.window_start_ms()
            )
        out = decoded.out
        published = 0
        # Alerts go out every PUBLISH_EVERY events, not at the end of the batch, and other
        # partitions' work runs in between.
        for _ in ingest.finish_in_steps(state, decoded, seen, PUBLISH_EVERY):
            published = await _publish(out.alerts, published, p)
            await asyncio.sleep(0)
        published = await _publish(out.alerts, published, p)
        metrics.DEDUP_SUSPECTS.inc(out.suspects)
        metrics.DEDUP_CONFIRMED.inc(out.confirmed)
        if self.open is None:
            self.open = out
        else:
            self.open.absorb(out)

    async def _commit(self) -> None:
        """Start the open batch's transaction (`_Transaction`): in flight while the next
        records are worked on, or awaited when it writes a ledger snapshot (of the state after
        this batch, so nothing later may be worked on first) or the partition is closing."""
        txn = self._transaction()
        if txn is None:
            return
        if not OVERLAP_COMMITS or txn.snapshot or self.closing:
            await self._write(txn)
            return
        self._flight = asyncio.ensure_future(self._write(txn))
        self._flight.add_done_callback(lambda _: self._wake.set())

    def _transaction(self) -> _Transaction | None:
        """The open batch closed into what its transaction writes, encoded now: the state
        records are the state as it is after this batch (later work changes it in place)."""
        out, repairs = self.open, self.repairs
        state, producer = self.state, self.producer
        if out is None:
            return None
        if state is None or producer is None:
            raise RuntimeError(f"partition {self.tp.partition} is not loaded")
        self._committed_at = time.monotonic()
        s, p = self.service.settings, self.tp.partition
        # What changed goes to the unwritten states (the check's repairs before the batch's own
        # changes, which come after them); a checkpoint writes them all, as they are now.
        if repairs is not None:
            state.unwritten_accounts.update(repairs.accounts)
            state.unwritten_alerts.update(repairs.alerts)
        state.unwritten_accounts.update(out.accounts)
        state.unwritten_alerts.update(out.alert_changes)
        # Every `snapshot_seconds`, and with a handover's last transaction when the ledger moved
        # on since the last snapshot (written or loaded): the next owner reads only what follows.
        snapshot = bool(s.snapshot_seconds) and (
            time.monotonic() - self._snapshot_at >= s.snapshot_seconds
            or (self.closing and (bool(out.ledger) or self._stale_snapshot()))
        )
        # With every snapshot (the load folds only the ledger after it), the state check's
        # repairs, a handover, and every `state_checkpoint_seconds`.
        checkpoint = snapshot or repairs is not None or self.closing or self._checkpoint_in() <= 0
        outputs: list[tuple[str, list[Record]]] = [(s.deadletter_topic, out.deadletters)]
        if checkpoint:
            self._checkpoint_at = self._committed_at
            outputs += [
                (
                    s.account_state_topic,
                    [state_record(k, v) for k, v in state.unwritten_accounts.items()],
                ),
                (
                    s.open_alerts_topic,
                    [state_record(k, v) for k, v in state.unwritten_alerts.items()],
                ),
                # where they stand: a load folds the ledger from there on
                (s.ledger_snapshot_topic, [ledger_snapshot.checkpoint_record(out.next_offset)]),
            ]
            state.unwritten_accounts, state.unwritten_alerts = {}, {}
        self.open = self.repairs = None
        # the state check's repairs go with this transaction: later batches need none (a
        # failure of this one reloads the partition, and checks it again). A transaction of
        # the states alone (an idle partition) comes before any check: the first batch checks.
        self.checked = self.checked or repairs is not None
        return _Transaction(
            out, outputs, snapshot, checkpoint, state.ledger.close_batch(), state, producer, p
        )

    async def _write(self, txn: _Transaction) -> None:
        """Write a batch in one transaction: its ledger entries, dead letters, state records (at
        a checkpoint) and source offset (exactly once; at least once: written, then the offset)."""
        out, state, producer, p = txn.out, txn.state, txn.producer, txn.partition
        s = self.service.settings
        started = time.monotonic()
        if self.transactional:
            await producer.begin_transaction()
            try:
                ledger_sent = await _send(producer, s.ledger_topic, p, out.ledger)
                for topic, batch in txn.outputs:
                    await _send(producer, topic, p, batch)
                if txn.snapshot:  # of the state after this batch, in its transaction
                    state.ledger.committed(await _end_of(ledger_sent), txn.ledger_batch)
                    await _send(
                        producer,
                        s.ledger_snapshot_topic,
                        p,
                        self.snapshots.records(state.ledger),
                    )
                await publisher.delivered()  # alerts durable before the offsets of their events
                await producer.send_offsets_to_transaction(
                    {self.tp: OffsetAndMetadata(out.next_offset, "")}, s.ingest_group
                )
                await producer.commit_transaction()
            except ProducerFenced:
                raise
            except BaseException:
                await _abort(producer)
                raise
            if not txn.snapshot:  # else marked committed above, for the snapshot
                state.ledger.committed(await _end_of(ledger_sent), txn.ledger_batch)
        else:
            ledger_sent = await _send(producer, s.ledger_topic, p, out.ledger)
            waiting = [await _send(producer, topic, p, batch) for topic, batch in txn.outputs]
            # The ledger too is written before the source offset is committed: the ledger is
            # what a restart resumes after.
            await asyncio.gather(*(w[0] for w in (ledger_sent, *waiting) if w is not None))
            state.ledger.committed(await _end_of(ledger_sent), txn.ledger_batch)
            if txn.snapshot:
                sent = await _send(
                    producer, s.ledger_snapshot_topic, p, self.snapshots.records(state.ledger)
                )
                if sent is not None:
                    await sent[0]
            await publisher.delivered()
            await self.service.running_consumer().commit({self.tp: out.next_offset})
        metrics.INGEST_TRANSACTION_SECONDS.observe(time.monotonic() - started)
        if txn.snapshot:
            self._snapshot_at = time.monotonic()
            metrics.LEDGER_SNAPSHOTS.inc()
        if txn.checkpoint:
            metrics.STATE_CHECKPOINTS.inc()
        if out.consumed:  # not a transaction of the states alone
            self.batches += 1
            self.service.count(out)

    async def _seal(self, state: PartitionState) -> None:
        """In bounded dedup mode, every `SEAL_SECONDS`: move the exact ids the warehouse holds
        into the filters (a warehouse that cannot answer leaves them exact, and says so)."""
        ledger = state.ledger
        if not ledger.bounded or time.monotonic() - self._sealed_at < SEAL_SECONDS:
            return
        self._sealed_at = time.monotonic()
        try:
            stored = await dedup_confirm.stored_through(
                self.service.settings.ledger_topic, self.tp.partition
            )
        except Exception as exc:  # the exact tier keeps the ids meanwhile: nothing is lost
            log.warning("ingest.dedup_seal_failed", partition=self.tp.partition, error=str(exc))
            return
        ledger.seal(stored)
        self.service.dedup_gauges()

    async def _take_up(self) -> None:
        """Load the partition (again, after a failed batch: a new producer, fencing the old
        epoch, the state reloaded, reading from the committed position); retried with backoff."""
        delay = RETRY_MIN_SECONDS
        while not self.closing:
            try:
                if self.transactional and self.producer is not None:
                    await self.producer.stop()
                self.producer = None
                await self._load()
                return
            except Exception as exc:  # the broker may still be away: try again
                self.service.note_error(
                    f"partition {self.tp.partition}: loading failed: {type(exc).__name__}: {exc}"
                )
                log.warning(
                    "ingest.load_failed",
                    partition=self.tp.partition,
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)


@dataclass
class _Transaction:
    """A closed batch, encoded: what its transaction writes."""

    out: IngestBatch
    #: (topic, records) besides the ledger: dead letters, and at a checkpoint the account and
    #: open-alert state records and the checkpoint's record
    outputs: list[tuple[str, list[Record]]]
    #: whether it writes a snapshot of the ledger state (then nothing is worked on meanwhile)
    snapshot: bool
    #: whether it writes the states changed since the previous checkpoint
    checkpoint: bool
    #: the ledger state's number of the batch (`LedgerState.close_batch`)
    ledger_batch: int
    state: PartitionState
    producer: AIOKafkaProducer
    partition: int


async def _send(
    producer: AIOKafkaProducer, topic: str, partition: int, records: list[Record]
) -> tuple[Any, int] | None:
    """Append `records` to the producer as ready-built record batches; the last batch's future
    (its base offset once written) and how many records that batch holds."""
    if not records:
        return None
    batch = producer.create_batch()
    count = 0
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            await producer.send_batch(batch, topic, partition=partition)
            batch = producer.create_batch()
            count = 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(
                    f"a record of {len(value or b'')} bytes for {topic} exceeds the producer's batch size"
                )
        count += 1
    return await producer.send_batch(batch, topic, partition=partition), count


async def _publish(alerts: list[tuple[bytes, bytes, int]], published: int, partition: int) -> int:
    """Publish the alerts from index `published` on; how many are published now."""
    for key, value, _ in alerts[published:]:
        await publisher.publish(key, value, partition)
    return len(alerts)


async def _end_of(sent: tuple[Any, int] | None) -> int:
    """The partition's offset after the records of a `_send` (0: nothing was sent)."""
    if sent is None:
        return 0
    future, count = sent
    return int((await future).offset) + count


async def _abort(producer: AIOKafkaProducer) -> None:
    try:
        await producer.abort_transaction()
    except Exception as exc:  # the producer is replaced next in any case
        log.warning("ingest.abort_failed", error=f"{type(exc).__name__}: {exc}")
