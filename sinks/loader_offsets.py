"""The warehouse loader's high-water marks: audit.loader_offsets (migration 0007).

One `Mark` per ledger partition says what the warehouse holds of it: every record below `start` is
stored (or was dead-lettered, or skipped), records in `[start, end)` may be stored (the batch being
inserted when the loader last stopped), and no record from `end` on is. The loader writes a
partition's mark *before* inserting a batch of it, so a crash at any point (before, during or after
the insert, before the Kafka commit) leaves a mark that covers what may have landed. It then needs
no query per batch to avoid duplicates: only the records of `[start, end)` redelivered after a
restart are checked against audit.events (`sinks.audit_store.stored_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sinks.clickhouse import Warehouse

TABLE = "audit.loader_offsets"


@dataclass(frozen=True, slots=True)
class Mark:
    """A ledger partition's high-water mark: `start` (all below handled), `end` (none from here stored)."""

    start: int
    end: int


def read_marks(warehouse: Warehouse, topic: str) -> dict[int, Mark]:
    """The mark in force for each partition of `topic` that has one (the row with the largest end)."""
    result = warehouse.query(
        f"SELECT partition, argMax(start, end), max(end) FROM {TABLE} WHERE topic = {{topic:String}} GROUP BY partition",  # noqa: S608
        {"topic": topic},
    )
    return {int(p): Mark(int(start), int(end)) for p, start, end in result.rows}


def write_marks(warehouse: Warehouse, topic: str, marks: Mapping[int, Mark]) -> None:
    """Record the marks of one batch (one row per partition; merges keep the largest end)."""
    if marks:
        warehouse.insert(
            TABLE,
            [
                {"topic": topic, "partition": p, "start": m.start, "end": m.end}
                for p, m in sorted(marks.items())
            ],
        )
