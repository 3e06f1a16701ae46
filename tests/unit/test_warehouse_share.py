"""A loader that stores only some of the ledger's partitions into an embedded warehouse says so.

Each worker's loader stores the ledger partitions its consumer group gives it. With a ClickHouse
server every loader writes the same tables; with the embedded warehouse each writes its own
folder, so with two workers neither warehouse holds the whole record. The loader warns when that
is the case (streams/warehouse_loader.py `note_share`), with a real embedded warehouse here and a
stand-in for the consumer's assignment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from aiokafka import TopicPartition

from pipeline.config import Settings
from streams.warehouse_loader import WarehouseLoader, embedded_share


class Assigned:
    """What `note_share` asks a consumer: its assignment and the topic's partitions."""

    def __init__(self, topic: str, owned: list[int], partitions: set[int] | None) -> None:
        self.owned = [TopicPartition(topic, p) for p in owned] + [TopicPartition("pw.alerts", 0)]
        self.partitions = partitions

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions


def test_a_share_of_the_partitions_is_named() -> None:
    warning = embedded_share({1, 3}, {0, 1, 2, 3})
    assert warning is not None
    assert "[1, 3] of 4" in warning
    assert "PW_CLICKHOUSE_URL" in warning


def test_every_partition_or_nothing_known_is_no_share() -> None:
    assert embedded_share({0, 1, 2, 3}, {0, 1, 2, 3}) is None
    assert embedded_share(set(), {0, 1, 2, 3}) is None  # nothing given (yet)
    assert embedded_share({0, 1}, None) is None  # the topic's partitions not known yet
    assert embedded_share({0, 1}, set()) is None


def test_the_loader_warns_on_a_share_of_an_embedded_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env({"PW_DATA_DIR": str(tmp_path)})
    loader = WarehouseLoader(settings)
    topic = settings.ledger_topic
    try:
        with structlog.testing.capture_logs() as logs:
            share = loader.note_share(Assigned(topic, [0, 2], {0, 1, 2, 3}))
            whole = loader.note_share(Assigned(topic, [0, 1, 2, 3], {0, 1, 2, 3}))
        assert share is not None and "[0, 2] of 4" in share
        assert whole is None
        warned = [e for e in logs if e["event"] == "warehouse.embedded_holds_a_share"]
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"
        # a ClickHouse server: every loader stores into the same tables, nothing to say
        embedded, loader.warehouse = loader.warehouse, _Server()
        try:
            assert loader.note_share(Assigned(topic, [0], {0, 1, 2, 3})) is None
        finally:
            loader.warehouse = embedded
    finally:
        loader.warehouse.close()


class _Server:
    """Not an embedded warehouse (only its type is looked at)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"note_share used the warehouse: {name}")
