"""Every private attribute of Faust and aiokafka the worker touches, in one place.

Each hook below relies on how faust-streaming and aiokafka work inside, at the versions in
`TESTED`; importing this module with any other version installed raises RuntimeError (see
pipeline/dependency_pins.py), so an upgrade is a deliberate act: re-read these hooks against
the new code, then move the pins here and in pyproject.toml together.
"""

from __future__ import annotations

from typing import Any

from pipeline.dependency_pins import require_tested

TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
require_tested(TESTED, __name__)

# imported after the version check: these names are what the hooks below subclass
from aiokafka import TopicPartition  # noqa: E402
from faust.transport.drivers import aiokafka as faust_kafka  # noqa: E402


def set_fetch_max_wait(app: Any, wait_ms: int) -> bool:
    """Lower the worker consumer's `fetch_max_wait_ms` (Faust hard-codes 1500 when it builds the
    aiokafka consumer); False until that consumer exists. aiokafka's fetcher reads the value for
    every fetch request, so setting it on the running fetcher takes effect at the next one."""
    consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None:
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    return True


def transaction_producer(app: Any, source_topic: str, partition: int) -> tuple[Any, Any]:
    """The aiokafka producer of the Kafka transaction of `source_topic`'s `partition`, and the
    lock Faust holds while it commits that transaction; without exactly-once, Faust's one
    producer and None (no lock).

    Faust names a transactional producer `<app id>-<assignor topic group>-<partition>` (its
    consumer's `_transactional_id`, not exposed) and keeps it, and its lock, in dicts of the
    producer keyed by that id.
    """
    faust_producer: Any = app.producer
    if not app.in_transaction:
        return faust_producer._ensure_producer(), None
    group = app.assignor.group_for_topic(source_topic)
    transactional_id = f"{app.conf.id}-{group}-{partition}"
    producer = faust_producer._transaction_producers.get(transactional_id)
    if producer is None:
        raise RuntimeError(f"no transactional producer {transactional_id} for source partition {partition}")
    return producer, faust_producer._trn_locks[transactional_id]


async def fetch_cluster_metadata(consumer: Any) -> Any:
    """Fresh cluster metadata through an aiokafka consumer's client. (`consumer.topics()` fetches
    it but leaves it out of the consumer's cluster view, so `partitions_for_topic` stays None for
    a topic created after the consumer started.)"""
    return await consumer._client.fetch_all_metadata()


class ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with changelog highwaters asked of the broker.

    Table recovery reads each changelog partition up to its highwater. Under exactly-once
    processing Faust takes it from `AIOKafkaConsumer.last_stable_offset(tp)`, which is not asked
    of the broker: it is what the last *fetch response* for that partition said, None until the
    consumer has fetched it once. When recovery starts right after the partitions are assigned,
    before the fetcher's first response, every changelog partition has None, Faust logs a
    highwater of -1, sees nothing to recover and starts with empty tables (issue 15, finding 20:
    -1 on all 8 partitions while the topics held offsets 0..804; 2 restarts in 3 in one run, none
    in another, as the race went). Here the highwater is the broker's answer to ListOffsets with
    the consumer's isolation level: read_committed, so the last stable offset, as of now.
    """

    async def _highwaters(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        consumer = self._ensure_consumer()
        if not self.consumer.in_transaction:
            return dict(await super()._highwaters(partitions))
        # The consumer reads read_committed (Faust sets it with transactions): the broker answers
        # with the last stable offset, past the last committed or aborted transaction.
        return dict(await consumer.end_offsets(list(partitions)))


class Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_kafka.Transport):
    Consumer = Consumer
