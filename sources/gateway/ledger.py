"""The gateway's view of the account's authorization: grants, approvals, policy, suspensions.

It reads the ledger topic (committed records only, outside any consumer group) and folds the
seller account's `permission.*`, `approval.grant` and `policy.update` entries with
`pipeline.authorization.apply`, the fold the detectors use. `permission.suspend` /
`permission.resume` by the seller also suspend or resume the provider in the gateway's store
(so a suspension made on another gateway instance reaches this one; one made here already
holds). The state and the ledger position are saved in the store every few seconds: the ledger
is compacted by account after the dedup window, so a gateway that has followed it keeps grants
older than that; a gateway started fresh on an old, compacted ledger sees only what is left
(docs: start the gateway with the worker, or keep its store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import authorization
from sources.gateway.store import Store

log = structlog.get_logger(__name__)

FOLDED = authorization.AUTHORIZATION_ACTIONS | {"permission.suspend", "permission.resume"}


@dataclass(frozen=True)
class LedgerKafka:
    """How the view reaches Kafka, given by the composition root (`partnerwatch.gateway.ledger_kafka`:
    the client factory's consumer, and the aiokafka metadata hook of streams/faust_internals.py),
    since sources/ imports neither sinks/ nor streams/."""

    #: a new consumer, not started, outside any group, reading committed records
    new_consumer: Callable[[], AIOKafkaConsumer]
    #: fresh cluster metadata through a started consumer (`partitions_for_topic` of any topic)
    cluster_metadata: Callable[[AIOKafkaConsumer], Awaitable[Any]]


class AuthorizationView:
    """The folded state of one account, kept current by `follow()`."""

    def __init__(self, store: Store, account_id: str, topic: str) -> None:
        self.store = store
        self.account_id = account_id
        self.topic = topic
        states, positions = store.load_authorization()
        raw = states.get(account_id)
        self.state: dict[str, Any] = orjson.loads(raw) if raw else authorization.empty()
        self.positions = {p: o for (t, p), o in positions.items() if t == topic}
        self.caught_up = asyncio.Event()
        self.applied = 0
        self._dirty = False

    def apply(self, entry: dict[str, Any]) -> None:
        """Fold one ledger entry (any account's; others are skipped)."""
        if entry.get("account_id") != self.account_id or entry.get("action") not in FOLDED:
            return
        action = entry["action"]
        if action in ("permission.suspend", "permission.resume"):
            actor = entry.get("actor", {})
            provider = entry.get("resource", {}).get("id")
            if actor.get("type") == "provider" or not provider or entry.get("outcome") != "success":
                return  # only the seller (or Amazon) can suspend or resume a provider
            if action == "permission.suspend":
                self.store.suspend(
                    provider,
                    actor.get("principal_id", "?"),
                    "from the ledger",
                    at=entry["occurred_at"],
                )
            else:
                self.store.resume(provider, at=entry["occurred_at"])
            self.applied += 1
            return
        if authorization.apply(self.state, entry):
            self.applied += 1
            self._dirty = True

    def save(self) -> None:
        self.store.save_authorization(
            {self.account_id: orjson.dumps(self.state).decode()},
            {(self.topic, p): o for p, o in self.positions.items()},
        )
        self._dirty = False

    async def follow(
        self, kafka: LedgerKafka, stop: asyncio.Event, save_every: float = 5.0
    ) -> None:
        """Read the ledger until `stop`; sets `caught_up` once the end as of start is reached."""
        while not stop.is_set():
            consumer = kafka.new_consumer()
            try:
                await consumer.start()
                partitions = await _partitions(kafka, consumer, self.topic, stop)
                if partitions is None:
                    return
                tps = [TopicPartition(self.topic, p) for p in partitions]
                consumer.assign(tps)
                for tp in tps:
                    start = self.positions.get(tp.partition)
                    if start is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, start)
                ends = await consumer.end_offsets(tps)
                last_save = time.monotonic()
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                    for tp, records in batch.items():
                        for record in records:
                            try:
                                entry = orjson.loads(record.value)
                            except orjson.JSONDecodeError:
                                continue
                            if isinstance(entry, dict):
                                self.apply(entry)
                            self.positions[tp.partition] = record.offset + 1
                    if not self.caught_up.is_set():
                        positions = {tp: await consumer.position(tp) for tp in tps}
                        if all(positions[tp] >= ends[tp] for tp in tps):
                            self.caught_up.set()
                            log.info("gateway.ledger_caught_up", applied=self.applied)
                    if batch or time.monotonic() - last_save > save_every:
                        if self._dirty or batch:
                            self.save()
                        last_save = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: retry, keep what we have
                log.warning("gateway.ledger_follow_error", error=str(exc))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        if self._dirty:
            self.save()


async def _partitions(
    kafka: LedgerKafka, consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event
) -> list[int] | None:
    while not stop.is_set():
        # aiokafka's public partitions_for_topic only knows topics of its own subscription
        cluster = await kafka.cluster_metadata(consumer)
        partitions = cluster.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return None
