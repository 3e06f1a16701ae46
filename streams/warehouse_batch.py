"""What the warehouse loader (streams/warehouse_loader.py) holds between commits.

`PartitionState`: what the warehouse holds of one ledger partition (from its high-water mark);
`Batch`: the records consumed since the last commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from sinks.loader_offsets import Mark


@dataclass(slots=True)
class PartitionState:
    """What the warehouse holds of one ledger partition, as this run knows it.

    Records below `stored_below` are stored (skipped without a query); those below `check_below`
    may be (checked against audit.events); from `check_below` on none is. `check_below` is None
    for a partition without a mark in a warehouse that holds events (loaded before marks
    existed, or its marks deleted): then the first `PW_WAREHOUSE_BATCH_ROWS` offsets from where
    reading starts are checked, the most the batch in flight before could have held. In a new
    warehouse (no event and no mark at the loader's first look) a partition without a mark is
    (0, 0): nothing of it can be stored, since a loader writes a mark before it inserts.
    """

    stored_below: int
    check_below: int | None

    @classmethod
    def of(cls, mark: Mark | None) -> PartitionState:
        return cls(0, None) if mark is None else cls(mark.start, mark.end)


@dataclass
class Batch:
    """Records consumed since the last commit."""

    #: the ledger records as fetched: (partition, records in offset order), in consumption order
    ledger: list[tuple[int, list[Any]]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: next offset to commit per topic-partition (stored, skipped and dead-lettered records alike)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: first offset consumed per ledger partition
    first: dict[int, int] = field(default_factory=dict)
    records: int = 0
    failed: bool = False  # an insert attempt failed: what it may have stored is checked on retry
