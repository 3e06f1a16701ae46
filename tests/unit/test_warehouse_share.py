"""A loader that stores only some of a topic's partitions into an embedded warehouse says so.

Each worker's loader stores the ledger and alert partitions its consumer group gives it. With a
ClickHouse server every loader writes the same tables; with the embedded warehouse each writes its
own folder, so with two workers neither warehouse holds the whole record. The loader warns when
that is the case (streams/warehouse_loader.py `note_share`), with a real embedded warehouse here
and a stand-in for the consumer's assignment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from aiokafka import TopicPartition

from pipeline.config import Settings
from streams.warehouse_loader import WarehouseLoader, embedded_share

ALL = {0, 1, 2, 3}


class Assigned:
    """What `note_share` asks a consumer: its assignment and each topic's partitions."""

    def __init__(self, owned: dict[str, list[int]], partitions: dict[str, set[int] | None]) -> None:
        self.owned = {TopicPartition(topic, p) for topic, ps in owned.items() for p in ps}
        self.partitions = partitions

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


def test_a_share_of_the_partitions_is_named() -> None:
    warning = embedded_share("pw.ledger", {1, 3}, ALL)
    assert warning is not None
    assert "[1, 3] of the 4 of pw.ledger" in warning
    assert "PW_CLICKHOUSE_URL" in warning
    # given none of them: the others hold all of it
    none = embedded_share("pw.ledger", set(), ALL)
    assert none is not None and "[] of the 4" in none


def test_every_partition_or_nothing_known_is_no_share() -> None:
    assert embedded_share("pw.ledger", set(ALL), ALL) is None
    assert embedded_share("pw.ledger", {0, 1}, None) is None  # the topic's partitions not known
    assert embedded_share("pw.ledger", {0, 1}, set()) is None


def test_the_loader_warns_on_a_share_of_an_embedded_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env({"PW_DATA_DIR": str(tmp_path)})
    loader = WarehouseLoader(settings)
    ledger, alerts = settings.ledger_topic, settings.alerts_topic
    known = {ledger: ALL, alerts: ALL}
    try:
        with structlog.testing.capture_logs() as logs:
            # a share of the ledger; every alert partition (one of them numbered as no ledger
            # partition it was given, so the topics are told apart)
            share = loader.note_share(Assigned({ledger: [0, 2], alerts: [0, 1, 2, 3]}, known))
            whole = loader.note_share(Assigned({ledger: [0, 1, 2, 3], alerts: [0, 1, 2, 3]}, known))
            # one partition each: one loader has the ledger, the other the alerts
            only_ledger = loader.note_share(Assigned({ledger: [0]}, {ledger: {0}, alerts: {0}}))
        assert len(share) == 1 and "[0, 2] of the 4 of" in share[0]
        assert whole == []
        assert len(only_ledger) == 1 and f"[] of the 1 of {alerts}" in only_ledger[0]
        warned = [e for e in logs if e["event"] == "warehouse.embedded_holds_a_share"]
        assert [(e["topic"], e["partitions"], e["of"]) for e in warned] == [
            (ledger, [0, 2], 4),
            (alerts, [], 1),
        ]
        assert all(e["log_level"] == "warning" for e in warned)
        # a ClickHouse server: every loader stores into the same tables, nothing to say
        embedded, loader.warehouse = loader.warehouse, _Server()
        try:
            assert loader.note_share(Assigned({ledger: [0]}, known)) == []
        finally:
            loader.warehouse = embedded
    finally:
        loader.warehouse.close()


class _Server:
    """Not an embedded warehouse (only its type is looked at)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"note_share used the warehouse: {name}")
