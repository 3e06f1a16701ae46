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


async def fetch_cluster_metadata(consumer: Any) -> Any:
    """Fresh cluster metadata through an aiokafka consumer's client. (`consumer.topics()` fetches
    it but leaves it out of the consumer's cluster view, so `partitions_for_topic` stays None for
    a topic created after the consumer started.)"""
    return await consumer._client.fetch_all_metadata()


def start_tables_without_pause(app: Any) -> None:
    """Faust's TableManager sleeps one second on start (faust/tables/manager.py `on_start`) so
    that tables defined late can still register before recovery; the worker's start waits on it.
    PartnerWatch defines no Faust table (detection state lives in the ingest service's own
    topics, streams/ingest_partition.py), so there is nothing to wait for. Should a table be
    defined, Faust's own start runs."""
    manager = app.tables
    faust_start = manager.on_start

    async def on_start() -> None:
        if len(manager):  # a table was defined after all: Faust's own start, pause included
            await faust_start()
        elif not manager.should_stop:
            await manager._update_channels()
            await manager.recovery.start()

    manager.on_start = on_start


def set_fetch_max_wait(consumer: Any, ms: int) -> None:
    """How long the broker may hold the consumer's next fetch requests when it has nothing for
    them (aiokafka reads `fetch_max_wait_ms` from its fetcher each time it builds a request,
    aiokafka/consumer/fetcher.py `_get_actions_per_node`; a fetch in flight keeps its own)."""
    consumer._fetcher._fetch_max_wait_ms = int(ms)
