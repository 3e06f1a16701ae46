"""The provider-wide stage: pw.ledger of every account -> detectors/provider_wide -> pw.alerts.

The per-account rules run inside the ingest agent, next to the account's chain, so their state
lives with the account's partition. Provider-wide rules need one provider's events from every
account, which are spread over every ledger partition. This stage reads the whole ledger in one
place and keeps the state keyed by provider (and by account, for authorization), in the pure
`detectors.provider_wide.run.Stage`; this module is only the Kafka wiring around it.

Design, and why:
- Input: a plain aiokafka consumer of pw.ledger in its own group (`<app id>-provider`,
  `Settings.provider_group`), committed records only. Not faust-streaming's `group_by`: a
  repartitioned record is sent inside the transaction of the *source* partition's producer and
  joins the destination partition's transaction, which faust commits only when that partition has
  offsets of its own to commit; a quiet partition holds repartitioned records invisible until the
  transaction times out (seen as stalls of 60 s). Re-keying is not needed at all here: the ledger
  is read whole.
- One active instance: the group's assignor gives every ledger partition to one member, the others
  stand by (streams/provider_assignment.py).
- Order: each partition is in ledger order (per account, `seq`); partitions are merged by event
  time (the oldest head first, holding back while a partition that will deliver more is empty:
  its ledger has committed records not fetched yet, or ingest is catching up on its actions
  partition or has just caught up (streams/ingest_backlog.py); at most `HOLD_SECONDS` without
  progress), so a backlog read at full speed does not run one partition hours of event time
  ahead of another. Rules still tolerate arrival disorder, and lateness up to
  `windows.LATENESS_MS`.
- State and recovery: checkpoints of the changed state, with the folded offsets, in one Kafka
  transaction; the next holder restores them (streams/provider_state.py).
- Alerts: published at once (within seconds of the ledger commit) by an idempotent producer
  outside the transaction, keyed by the triggering event's account; a checkpoint commits only
  after every alert published before it is acknowledged. Exactly-once is not promised: after a
  crash the entries after the last checkpoint are folded again from the checkpointed open alerts
  and their alert versions are published again, with the same `alert_id` and, folded in the same
  order, the same content. Alert ids are deterministic (`detector | key | window`, windows from
  event time), and every consumer keeps the latest version per `alert_id` (the warehouse's
  ReplacingMergeTree, the alert feeds), so a repeat is harmless.

Sigma rules (detectors/sigma) in `PW_RULES_DIR` run here too, over every event, and are loaded
again within `RULES_SECONDS` of a file changing (hot reload; a folder that does not load is
refused and the rules in force stay). So does the behaviour model's day forest over providers'
days across accounts (detectors/behaviour/scoring.py), from a `ModelSlot` of its own on
`PW_MODEL_DIR`, reloaded every `PW_MODEL_RELOAD_SECONDS` off the loop like the detect agent's.

Runs in a thread of its own with its own event loop (like the warehouse loader), so a burst of
folding never delays the ingest agent's loop.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from detectors.behaviour.model import ModelSlot
from detectors.provider_wide.run import SIGMA, Stage
from detectors.sigma import RuleError
from detectors.sigma.evaluate import SigmaRules
from detectors.sigma.load import load as load_rules
from detectors.sigma.load import signature
from detectors.windows import epoch_ms
from pipeline.alert import Alert
from pipeline.config import Settings
from pipeline.ledger import entry_event
from sinks import metrics
from sinks.kafka_io import aio_consumer, aio_producer
from streams.faust_internals import raw_value, records_as_fetched, release_dropped_fetches
from streams.ingest_backlog import IngestBacklog
from streams.provider_assignment import OneActive, StageListener
from streams.provider_state import load_states, write_checkpoint

log = structlog.get_logger(__name__)

#: Longest the merge waits for a partition that makes no progress (its ingest stalled).
HOLD_SECONDS = 5.0
#: How often the stage looks for changed files in PW_RULES_DIR (Sigma rules, hot reload).
RULES_SECONDS = 5.0
#: A partition's buffer above this is paused until it drains to half.
BUFFER_RECORDS = 20_000


class _Head(msgspec.Struct, gc=False):
    """What the merge needs of a buffered ledger record: its event time (the rest is parsed
    when the entry is folded)."""

    occurred_at: str


_head = msgspec.json.Decoder(_Head).decode


class ProviderStage:
    """Consume the ledger, merge, fold, publish, checkpoint; one thread with its own loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stage: Stage | None = None
        self.partitions: list[int] = []
        #: partition -> (event time, offset, the ledger record's bytes), in ledger order
        self.buffers: dict[int, deque[tuple[str, int, bytes]]] = {}
        #: partition -> offset after the last entry folded (what a checkpoint commits)
        self.folded: dict[int, int] = {}
        self.checkpointed: dict[int, int] = {}
        self.folded_total = 0
        self.newest_ms = 0
        self.last_error = ""
        #: why the stage's thread ended, when it ended on an exception ("" otherwise)
        self.crashed = ""
        self._consumer: AIOKafkaConsumer | None = None
        self._alerts: AIOKafkaProducer | None = None
        self._state: AIOKafkaProducer | None = None
        self._pending: list[asyncio.Future[Any]] = []
        self._held_since: float | None = None
        #: the partitions the merge waits for, each with why (`_expects_more`; see `_merge`)
        self._waiting: dict[int, str] = {}
        #: since when, and why, the last merge held back ("": it did not): `PROVIDER_HELD`
        self._held_at = 0.0
        self._held_for = ""
        self._backlog = IngestBacklog(settings)
        #: the Sigma rules of PW_RULES_DIR (None: none), and when the folder was last looked at
        self.sigma: SigmaRules | None = None
        self._rules_at = 0.0
        #: the behaviour model (its day forest scores providers' days across accounts)
        self.models = ModelSlot(settings.models_path)
        self._models_due = 0.0  # when to look again (at once, then every PW_MODEL_RELOAD_SECONDS)
        #: moved on by every take-over and hand-over (see `take_over`)
        self.generation = 0
        self._lock = asyncio.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="provider-stage", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The ledger consumer (while `run` runs)."""
        if self._consumer is None:
            raise RuntimeError("the provider stage is not running")
        return self._consumer

    def _folding(self) -> tuple[Stage, AIOKafkaProducer]:
        """The state being folded and the alert producer (while this member holds the ledger)."""
        if self.stage is None or self._alerts is None:
            raise RuntimeError("the provider stage holds no ledger")
        return self.stage, self._alerts

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self.run())
        except BaseException as exc:  # the thread ends: /v1/health says so (crashed)
            self.crashed = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("provider_stage.crashed")

    async def run(self) -> None:
        """Until `stop`: join the group, and while holding the ledger, fold it."""
        s = self.settings
        self._alerts = aio_producer(s, role="provider-alerts", linger_ms=0)
        await self._alerts.start()
        records_as_fetched()  # no ConsumerRecord per record: the offset and value do (`_take`)
        # a partition paused by `_flow_control` drops its records fetched ahead: freed at once
        release_dropped_fetches()
        consumer = self._consumer = aio_consumer(
            s,
            role="provider-stage",
            group=s.provider_group,
            partition_assignment_strategy=(OneActive,),
            fetch_max_wait_ms=50,
            value_deserializer=raw_value,
        )
        consumer.subscribe([s.ledger_topic], listener=StageListener(self))
        self.reload_rules()
        await consumer.start()
        last_checkpoint = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= self._rules_at + RULES_SECONDS:
                    async with self._lock:
                        self.reload_rules()
                if time.monotonic() >= self._models_due:
                    await self.reload_model()
                generation = self.generation
                batch = await consumer.getmany(timeout_ms=100, max_records=5000)
                async with self._lock:
                    if self.stage is None or generation != self.generation:
                        continue  # fetched before a take-over moved the positions: fetched again
                    self._take(batch)
                    if any(self.buffers.values()):  # idle: no broker round trips
                        await self._merge()
                        self._flow_control()
                    if time.monotonic() - last_checkpoint >= s.provider_checkpoint_seconds:
                        await self.checkpoint()
                        last_checkpoint = time.monotonic()
            async with self._lock:
                await self.checkpoint()
        finally:
            await consumer.stop()
            if self._state is not None:
                await self._state.stop()
                self._state = None
            await self._backlog.close()
            await self._alerts.stop()
            metrics.PROVIDER_ACTIVE.set(0)

    # -- taking over and handing over -----------------------------------------------------

    async def take_over(self, partitions: list[int]) -> None:
        """This member now holds the ledger: fence any older holder, restore, seek.

        Called by the consumer's group coordinator, concurrently with the fold loop: it waits for
        the loop's lock, and moves `generation` on so a batch fetched before the seek is dropped.
        """
        async with self._lock:
            self.generation += 1
            await self._take_over(partitions)

    async def _take_over(self, partitions: list[int]) -> None:
        s = self.settings
        self._state = aio_producer(
            s, role="provider-state", transactional_id=s.provider_transactional_id
        )
        await (
            self._state.start()
        )  # init_transactions: fences an older holder, aborts its open transaction
        committed = {}
        for p in partitions:
            offset = await self.consumer.committed(TopicPartition(s.ledger_topic, p))
            committed[p] = offset
        if self.stage is None or committed != {p: self.checkpointed.get(p) for p in partitions}:
            states = await load_states(s)
            self.stage = Stage(s.detect, states, sigma=self.sigma, model=self.models.model)
            metrics.PROVIDER_RESTORED.set(len(states))
            log.info("provider_stage.restored", keys=len(states), offsets=committed)
            # The restored state (and everything loaded before it) lives on: out of the
            # collector's view, as the ingest service does with its own (streams/ingest.py).
            gc.freeze()
        # Plain seeks to known offsets (a seek_to_beginning resets asynchronously, and raced
        # with fetches already in flight: a partition was read twice).
        tps = [TopicPartition(s.ledger_topic, p) for p in partitions]
        beginning = await self.consumer.beginning_offsets(tps)
        for tp in tps:
            start = committed[tp.partition]
            self.consumer.seek(tp, beginning[tp] if start is None else start)
        self.partitions = partitions
        self.buffers = {p: deque() for p in partitions}
        self.folded = {p: committed[p] for p in partitions if committed[p] is not None}
        self.checkpointed = dict(self.folded)
        metrics.PROVIDER_UNCHECKPOINTED.set(0)
        metrics.PROVIDER_ACTIVE.set(1)
        log.info("provider_stage.active", partitions=partitions)

    def reload_rules(self) -> None:
        """Load PW_RULES_DIR again when its files changed (name, size or time): the new rules run
        from the next event; a folder that does not load is logged and counted, and the rules in
        force stay. Windows of correlations that are gone are dropped."""
        self._rules_at = time.monotonic()
        folder = self.settings.rules_dir
        if not folder:
            return
        path = Path(folder)
        try:
            if self.sigma is not None and signature(path) == self.sigma.ruleset.signature:
                return
            ruleset = load_rules(path)
        except (RuleError, OSError) as exc:
            metrics.SIGMA_RELOAD_FAILURES.inc()
            log.error("provider_stage.rules_refused", folder=folder, error=str(exc))
            return
        self.sigma = SigmaRules(ruleset)
        metrics.SIGMA_RULES.set(len(ruleset.names))
        log.info("provider_stage.rules_loaded", folder=folder, rules=ruleset.names)
        if self.stage is not None:
            self.stage.sigma = self.sigma
            windows = self.stage.states.get(SIGMA, {}).get("det", {})
            for gone in [name for name in windows if name not in ruleset.correlations]:
                del windows[gone]
                self.stage.dirty.add(SIGMA)

    async def reload_model(self) -> None:
        """Look for a newer behaviour model (in a thread); used from the next event."""
        every = self.settings.model_reload_seconds
        self._models_due = time.monotonic() + every if every > 0 else float("inf")
        changed = await asyncio.get_running_loop().run_in_executor(None, self.models.reload)
        if changed:  # the worker's own slot says the cold start; this one says what it means here
            idle = self.models.model is None and not self.models.refused
            status = "none yet: days across accounts not scored" if idle else self.models.message
            log.info("provider_stage.behaviour_model", status=status)
        async with self._lock:
            if self.stage is not None:
                self.stage.model = self.models.model

    async def hand_over(self) -> None:
        """The ledger is being taken away (a rebalance, or stopping): checkpoint and let go. The
        state stays in memory: if the same offsets come back to this member, it goes on."""
        async with self._lock:
            self.generation += 1
            await self._hand_over()

    async def _hand_over(self) -> None:
        self._count_held()
        if self.stage is not None:
            try:
                await self.checkpoint()
            except KafkaError as exc:
                log.warning("provider_stage.hand_over_failed", error=str(exc))
                self.stage = None
        if self._state is not None:
            await self._state.stop()
            self._state = None
        self.buffers = {}
        self.partitions = []
        metrics.PROVIDER_ACTIVE.set(0)

    # -- folding ---------------------------------------------------------------------------

    def _take(self, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Buffer a fetched batch: each record keyed by its event time for the merge, as bytes.

        Only the event time is decoded here (msgspec, into a struct the collector does not
        track); the entry is parsed when it is folded. A buffer of parsed entries held up to
        `BUFFER_RECORDS` dicts per partition, each a dozen objects the collector walked again
        at every collection until the entry was folded (a fifth of the stage process's CPU)."""
        head = _head
        for tp, records in batch.items():
            if records and tp.partition in self._waiting:
                self._held_since = None  # progress: the hold starts over
            buffer = self.buffers[tp.partition]
            for record in records:
                value = record.value
                buffer.append((head(value).occurred_at, record.offset, value))

    async def _merge(self) -> None:
        """Fold buffered entries, oldest event time first across partitions, holding back while a
        partition that will deliver more has none buffered (at most `HOLD_SECONDS` without
        progress). A partition will deliver more while the ledger has committed records not yet
        fetched (by the last fetch, or up to where the ledger ended when its ingest stopped
        being behind), or while ingest is catching up on its actions partition (the worker group's
        committed offset behind where the end was a look ago, `IngestBacklog`; not the events
        merely on their way through ingest under live traffic, which would hold every fold for
        the slowest partition's next transaction): in a backlog, each partition's ledger grows
        as fast as its ingest, and a partition whose ingest runs ahead would otherwise be folded
        hours of event time ahead of the others.

        The fold itself is synchronous: an event's alert versions are published (awaited) right
        after it is folded, in order, and only then is its offset counted as folded; an event
        without alerts costs no await. The metrics are counted once per merge."""
        self._count_held()
        await self._backlog.refresh(self.consumer, self.partitions)
        buffers = self.buffers
        self._waiting = {}
        for p in self.partitions:
            if not buffers[p] and (why := await self._expects_more(p)):
                self._waiting[p] = why
        heads = [(b[0][0], p) for p, b in buffers.items() if b]
        heapq.heapify(heads)
        folded = self.folded
        count, newest = 0, self.newest_ms
        try:
            while heads:
                if self._waiting:
                    if self._held_since is None:
                        self._held_since = time.monotonic()
                    if time.monotonic() - self._held_since < HOLD_SECONDS:
                        self._held_at = time.monotonic()
                        backlog = "ingest_backlog" in self._waiting.values()
                        self._held_for = "ingest_backlog" if backlog else "ledger_unfetched"
                        return
                _, p = heapq.heappop(heads)
                buffer = buffers[p]
                observe = self._folding()[0].observe
                # The partition's entries while its head stays the oldest: the heap would give
                # them one by one (nothing else changes the heads or the hold meanwhile).
                after = heads[0] if heads else None
                while True:
                    at, offset, value = buffer.popleft()
                    alerts = observe(entry_event(value))
                    if alerts:
                        await self._publish(alerts)
                    folded[p] = offset + 1
                    count += 1
                    ms = epoch_ms(at)
                    if ms > newest:
                        newest = ms
                    if not buffer or (after is not None and (buffer[0][0], p) > after):
                        break
                if buffer:
                    heapq.heappush(heads, (buffer[0][0], p))
                elif why := await self._expects_more(p):
                    self._waiting[p] = why
        finally:
            self._count(count, newest)
        if not self._waiting:
            self._held_since = None

    def _count_held(self) -> None:
        """Count the time since the last merge held back, if it did (`PROVIDER_HELD`)."""
        if self._held_for:
            metrics.PROVIDER_HELD.labels(self._held_for).inc(time.monotonic() - self._held_at)
            self._held_for = ""

    async def _expects_more(self, partition: int) -> str:
        """Why the partition will deliver more ("": it will not): `ingest_backlog`, its ingest has
        a backlog (`IngestBacklog`), or `ledger_unfetched`, the ledger partition has committed
        records not fetched yet (by the last fetch's last stable offset, or where its ingest's
        catching up ended)."""
        if partition in self._backlog.partitions:
            return "ingest_backlog"
        tp = TopicPartition(self.settings.ledger_topic, partition)
        position = await self.consumer.position(tp)
        if not self._backlog.reached(partition, position):
            return "ledger_unfetched"
        lso = self.consumer.last_stable_offset(tp)
        return "ledger_unfetched" if lso is None or position < lso else ""

    async def _publish(self, alerts: list[Alert]) -> None:
        """Send alert versions in order; a checkpoint waits for their acknowledgements."""
        producer = self._folding()[1]
        for alert in alerts:
            future = await producer.send(
                self.settings.alerts_topic,
                orjson.dumps(alert),
                key=str(alert["account_id"]).encode(),
            )
            self._pending.append(future)
            metrics.PROVIDER_ALERTS.labels(alert["detector"]).inc()

    def _count(self, events: int, newest_ms: int) -> None:
        """The metrics of a merge's folded events (`newest_ms`: the latest event time seen)."""
        if events:
            self.folded_total += events
            metrics.PROVIDER_EVENTS.inc(events)
            metrics.PROVIDER_UNCHECKPOINTED.inc(events)
        if newest_ms > self.newest_ms:
            self.newest_ms = newest_ms
            metrics.PROVIDER_EVENT_TIME.set(newest_ms / 1000)

    def _flow_control(self) -> None:
        """Pause partitions whose buffers run far ahead; resume them once they drain."""
        for p, buffer in self.buffers.items():
            tp = TopicPartition(self.settings.ledger_topic, p)
            if len(buffer) > BUFFER_RECORDS:
                self.consumer.pause(tp)
            elif len(buffer) < BUFFER_RECORDS // 2 and tp in self.consumer.paused():
                self.consumer.resume(tp)

    async def checkpoint(self) -> None:
        """Commit the changed state and the folded offsets in one transaction, once every alert
        published so far is acknowledged."""
        if self.stage is None or self._state is None:
            return
        if self.folded == self.checkpointed and not self.stage.dirty:
            return
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)
        changed = self.stage.take_dirty()
        try:
            await write_checkpoint(self._state, self.settings, changed, self.folded)
        except ProducerFenced:
            # Another member took the stage over (this one missed a rebalance): stop folding;
            # if the group gives the ledger back, take_over restores from the snapshot.
            log.error("provider_stage.fenced", detail="another instance holds the stage")
            self.stage = None
            return
        except KafkaError as exc:
            self.stage.dirty.update(changed)  # not committed: written again next time
            self.last_error = str(exc)
            log.warning("provider_stage.checkpoint_failed", error=str(exc))
            return
        self.checkpointed = dict(self.folded)
        metrics.PROVIDER_CHECKPOINTS.inc()
        metrics.PROVIDER_UNCHECKPOINTED.set(0)
