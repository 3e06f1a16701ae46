"""The warehouse's interface, shared by both ClickHouse backends (sinks/clickhouse.py opens one).

Rows are dicts of JSON-friendly values; timestamps are `YYYY-MM-DD HH:MM:SS.mmm` strings in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sinks.user_sql import SqlLimits, UserQuery

Row = dict[str, Any]
#: The String columns of `Warehouse.insert_select`: each a list of str, or a list of bytes.
InsertColumns = Mapping[str, Sequence[str] | Sequence[bytes]]

#: The writer connections' `max_partitions_per_insert_block`. Events and alerts are partitioned by
#: month of `occurred_at` / `first_seen`, times a provider claims: one batch may span many months
#: (the validator takes 1970-2200), and ClickHouse's default of 100 would fail the whole insert,
#: stalling the loader on one hostile event. The validator's range bounds the months to this.
MAX_PARTITIONS_PER_INSERT = (2200 - 1970 + 1) * 12


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message says which and why.

    `code` is ClickHouse's error code when the engine answered with an error (e.g. 62: syntax
    error, 159: timeout), None when it was not reached or the failure is ours.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Warehouse(Protocol):
    """What the pipeline needs from ClickHouse."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...

    def insert(self, table: str, rows: Sequence[Row]) -> None: ...

    def insert_select(
        self, table: str, columns: Sequence[str], select: str, data: InsertColumns
    ) -> None:
        """`INSERT INTO table (columns) <select>`, where `select` reads `{source}`: a table of the
        String columns `data` (equal lengths; all `str` or all `bytes`, as they are: the bytes
        need not be UTF-8). ClickHouse computes the rows (parses, converts)."""
        ...

    def close(self) -> None: ...

    def user_query(self, params: dict[str, Any], limits: SqlLimits) -> UserQuery: ...


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _insert_select_sql(table: str, columns: Sequence[str], select: str, source: str) -> str:
    """`select` is the caller's own constant SQL with a `{source}` placeholder; values never enter it."""
    if "{source}" not in select:
        raise WarehouseError("insert_select: the SELECT must read {source}")
    names = ", ".join(_identifier(c) for c in columns)
    return f"INSERT INTO {_identifier(table)} ({names}) " + select.replace("{source}", source)


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise WarehouseError(f"not a plain identifier: {name!r}")
    return name
