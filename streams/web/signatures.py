"""Signed HTTP requests are accepted once, by every worker and across restarts: the replay ledger.

A signed `POST /v1/events` (streams/web/ingest.py) is valid for `PW_INGEST_HMAC_WINDOW` seconds on
either side of its timestamp, so an exact copy of it must be refused for that long, by this worker
after a restart and by every other worker sharing the broker. Memory cannot do that; the ledger
is the Kafka topic `<prefix>http-signatures` (one partition, records kept a day or two windows).

To accept a signature a worker *claims* it: it produces `key = sha256(signature)`, `value =
{"exp": <when it may be forgotten>}` (acks=all), then reads the topic up to its own record. The
claim wins when no earlier record on the partition holds the same key: the partition's order is
the one order every worker agrees on, so of two concurrent copies of one request, on one worker or
two, exactly one is accepted. At start a worker reads back the records that may still matter
(timestamps from now minus the longest lifetime) before it answers signed requests (until then
/v1/health says `http_ingest: starting` and signed requests get 503).

Why Kafka rather than the warehouse: it is the one store every worker reaches in every deployment
(the embedded chDB warehouse belongs to one process), and its per-partition order gives the
first-claim-wins rule that ClickHouse, without transactions or read-after-write across replicas,
cannot. Only the hash of a signature is written, never a body or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from pipeline.config import Settings
from sinks.kafka_io import aio_consumer

log = structlog.get_logger(__name__)

#: Signatures remembered at once; beyond this, signed requests are refused until some expire.
MAX_REMEMBERED = 200_000
#: Extra seconds a signature is remembered past its window (clock differences between workers).
SLACK = 60.0
#: How long a claim may wait to read its own record back before the request gets 503.
CLAIM_TIMEOUT = 10.0


class LedgerUnavailable(Exception):
    """The ledger cannot decide now (not caught up, broker slow): the client retries later."""


class SignatureLedger(Service):
    """The claims of one worker against the shared topic."""

    def __init__(self, settings: Settings, producer: Any, **kwargs: Any) -> None:
        self.settings = settings
        self.topic = settings.signatures_topic
        self._producer_of = (
            producer  # the IngestProducer service: its started producer sends claims
        )
        self._first: dict[bytes, tuple[int, int, float]] = {}  # key -> (partition, offset, expires)
        self._position: dict[int, int] = {}  # partition -> next offset this worker has read
        self._moved = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = False
        super().__init__(**kwargs)

    @property
    def lifetime(self) -> float:
        """The longest a signature must be remembered: its window on both sides, plus slack."""
        return 2 * self.settings.ingest_hmac_window + SLACK

    async def on_start(self) -> None:
        if not self.settings.ingest_hmac_secret:
            self.ready = True  # no signed requests: nothing to remember
            return
        consumer = aio_consumer(self.settings, role="http-signatures", fetch_max_wait_ms=50)
        await consumer.start()
        self.consumer = consumer
        partitions = await self._partitions()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        since = int((time.time() - self.lifetime) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            start = found.offset if found is not None else ends[tp]
            consumer.seek(tp, start)
            self._position[tp.partition] = start
        self.add_future(self._read())
        for tp in tps:
            await self._reach(tp.partition, ends[tp], timeout=120.0)
        self.ready = True
        log.info("http_signatures.ready", remembered=len(self._first))

    async def _partitions(self) -> set[int]:
        """The topic's partitions, from the ingest producer's metadata once it has started."""
        deadline = time.monotonic() + 120.0
        while self._producer_of.producer is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP ingest producer did not start")
            await asyncio.sleep(0.1)
        try:
            return set(await self._producer_of.producer.partitions_for(self.topic))
        except Exception as exc:
            raise RuntimeError(
                f"topic {self.topic} is not available ({type(exc).__name__}): `partnerwatch topics` creates it"
            ) from None

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def _read(self) -> None:
        if self.consumer is None:
            raise RuntimeError("the signature ledger is not started")
        while not self.should_stop:
            try:
                batches = await self.consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except (
                Exception
            ) as exc:  # a broker hiccup: claims wait (then 503) until reading resumes
                if self.should_stop:
                    return
                log.warning("http_signatures.read_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            now = time.time()
            for tp, records in batches.items():
                for record in records:
                    self._note(record.key, record.value, tp.partition, record.offset, now)
                if records:
                    self._position[tp.partition] = records[-1].offset + 1
            if len(self._first) > MAX_REMEMBERED // 2:
                self._first = {k: v for k, v in self._first.items() if v[2] > now}
            self._moved.set()
            self._moved = asyncio.Event()

    def _note(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int, now: float
    ) -> None:
        try:
            expires = float(orjson.loads(value or b"{}")["exp"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not a claim (this topic is ours, but be safe)
        if key is None or expires <= now:
            return
        seen = self._first.get(key)
        if seen is None or seen[2] <= now:
            self._first[key] = (partition, offset, expires)

    async def _reach(self, partition: int, offset: int, timeout: float) -> None:
        """Wait until this worker has read the partition up to `offset` (exclusive)."""
        deadline = time.monotonic() + timeout
        while self._position.get(partition, 0) < offset:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LedgerUnavailable("the replay ledger did not catch up in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)

    async def claim(self, signature: str, timestamp: int) -> bool:
        """True when this is the first use of `signature`; False for a replay. May raise LedgerUnavailable."""
        if not self.ready:
            raise LedgerUnavailable("the replay ledger is still reading back")
        producer = self._producer_of.producer
        if producer is None:
            raise LedgerUnavailable("the producer is starting")
        now = time.time()
        key = hashlib.sha256(signature.encode()).hexdigest().encode()
        seen = self._first.get(key)
        if seen is not None and seen[2] > now:
            return False  # known already: no need to ask the broker
        if len(self._first) >= MAX_REMEMBERED:
            raise LedgerUnavailable("too many signed requests in the replay window")
        expires = max(now, timestamp + self.settings.ingest_hmac_window) + SLACK
        try:
            meta = await (await producer.send(self.topic, orjson.dumps({"exp": expires}), key=key))
        except Exception as exc:
            raise LedgerUnavailable(
                f"the replay ledger is unavailable: {type(exc).__name__}"
            ) from None
        await self._reach(meta.partition, meta.offset + 1, CLAIM_TIMEOUT)
        first = self._first.get(key)
        return first is not None and (first[0], first[1]) == (meta.partition, meta.offset)
