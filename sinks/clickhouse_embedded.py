"""The embedded warehouse: chDB, ClickHouse in-process on disk; and chDB's parser for the guard.

The engine locks its folder to one process (the worker's loader child by default,
streams/loader_child.py), so while the worker runs, other processes query through the worker's
`/v1/sql` endpoint (see `partnerwatch.main sql`).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from sinks.user_sql import SqlLimits, UserQuery, _engine_error
from sinks.warehouse import (
    MAX_PARTITIONS_PER_INSERT,
    InsertColumns,
    QueryResult,
    Row,
    WarehouseError,
    _identifier,
    _insert_select_sql,
)

log = structlog.get_logger("sinks.clickhouse")


class _ChdbParser:
    """The guard's parser: ClickHouse's own, in chDB, on a read-only connection. The query text is
    always a parameter of `formatQuerySingleLine` / `parseQueryToJSON`, never a statement."""

    def __init__(self, connection_string: str) -> None:
        from chdb import connect

        try:
            self._connection = connect(connection_string)
        except Exception as exc:
            raise _engine_error(exc) from exc
        self._lock = threading.Lock()

    def _value(self, function: str, sql: str) -> str:
        with self._lock:
            try:
                result = self._connection.query(
                    f"SELECT {function}({{q:String}})", "JSONCompact", params={"q": _escaped(sql)}
                )
            except Exception as exc:
                raise ValueError(str(_engine_error(exc))) from exc
        return str(orjson.loads(bytes(result.bytes()))["data"][0][0])

    def format_query(self, sql: str) -> str:
        return self._value("formatQuerySingleLine", sql)

    def parse_json(self, sql: str) -> str:
        return self._value("parseQueryToJSON", sql)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


_memory_parser: _ChdbParser | None = None
_memory_parser_lock = threading.Lock()


def _server_side_parser() -> _ChdbParser:
    """For a ClickHouse server: chDB's parser in this process (an in-memory engine, opened once).
    The server may be older than parseQueryToJSON (26.8); its read-only user is the backstop."""
    global _memory_parser
    with _memory_parser_lock:
        if _memory_parser is None:
            _memory_parser = _ChdbParser(":memory:?readonly=1")
        return _memory_parser


# -- embedded (chDB) ----------------------------------------------------------------------------


#: ClickHouse reads a query parameter in its escaped text format (as TabSeparated): a raw
#: newline ends the value and a backslash starts an escape, so both (and tab, CR, NUL) are escaped.
_ESCAPED = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"})


def _text_param(value: Any) -> str:
    """A parameter in ClickHouse's text format, as chDB expects for `{name:Type}`.

    chDB reads a parameter's value in the escaped text format: a backslash starts an escape and
    a raw line break ends the value, so both are escaped (a backslash stays a backslash).
    """
    if isinstance(value, str):
        return value.translate(_ESCAPED)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_quoted(v) for v in value) + "]"
    raise WarehouseError(f"unsupported query parameter type {type(value).__name__}")


def _escaped(text: str) -> str:
    return text.translate(_ESCAPED)


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return _text_param(value)


class EmbeddedWarehouse:
    """chDB on disk. One session per process; calls are serialized by a lock."""

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        if any(c in str(path) for c in "?&="):
            raise WarehouseError(f"the warehouse path may not contain ?, & or =: {path}")
        self.path = path
        # Second line of defence behind the SQL guard: the engine's user-files folder is an empty
        # one of ours. (chDB, like clickhouse-local, still lets file() open absolute paths and
        # resolves relative ones from the working directory: the guard's refusal is what stops it.)
        self.user_files = path / "user_files"
        self.user_files.mkdir(mode=0o700, exist_ok=True)
        if any(self.user_files.iterdir()):
            log.warning("warehouse.user_files_not_empty", path=str(self.user_files))
        self._lock = threading.Lock()
        try:
            self._session = session.Session(
                f"{path}?user_files_path={self.user_files}"
                f"&max_partitions_per_insert_block={MAX_PARTITIONS_PER_INSERT}"
            )
        except Exception as exc:
            raise WarehouseError(
                f"cannot open the embedded warehouse at {path}: {exc}. If the worker is running, "
                "it owns this folder: query through it (`partnerwatch sql` does so by itself)."
            ) from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, "CSV", params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        raw = self._run(sql, "JSONCompact", params)
        if not raw.strip():
            return QueryResult([], [], [])
        doc = orjson.loads(raw)
        meta = doc.get("meta", [])
        return QueryResult(
            [m["name"] for m in meta], [m["type"] for m in meta], doc.get("data", [])
        )

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        body = b"\n".join(orjson.dumps(r) for r in rows).decode()
        self._run(f"INSERT INTO {_identifier(table)} FORMAT JSONEachRow\n{body}", "CSV", None)

    def insert_select(
        self, table: str, columns: Sequence[str], select: str, data: InsertColumns
    ) -> None:
        """The String columns reach the engine as Python objects (chDB's `Python()` table function
        reads this frame's `pw_insert_source` by name): no text format, no escaping. Columns of
        bytes go as an Arrow table (binary columns, not nullable): the engine copies its buffers
        without taking the GIL per value (a list of str is read value by value, holding it)."""
        if not data or not next(iter(data.values())):
            return
        pw_insert_source = _arrow_table(data) if _is_bytes(data) else data  # noqa: F841  # read by name by the engine
        sql = _insert_select_sql(table, columns, select, "Python(pw_insert_source)")
        with self._lock:
            try:
                self._session.query(sql, "CSV")
            except Exception as exc:
                self._drain()
                raise WarehouseError(str(exc).strip()) from exc

    def release_memory(self) -> None:
        """Hand the memory the engine freed back to the system now (`SYSTEM JEMALLOC PURGE`).

        chDB's allocator (jemalloc, inside the library) keeps what an insert or a merge freed and
        gives it back only after its decay time: while the warehouse loads, that kept memory was
        about 250 MiB of the worker's RSS at its peak (docs/performance.md, "Where the worker's
        memory goes"). Raises WarehouseError where the engine cannot (a build without jemalloc)."""
        self.execute("SYSTEM JEMALLOC PURGE")

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def user_query(self, params: dict[str, Any], limits: SqlLimits) -> UserQuery:
        """A user query on connections of its own (readonly=1, the limits): it does not take the
        warehouse lock, so the loader and other queries go on while it runs."""
        return _EmbeddedUserQuery(str(self.path), params, limits)

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        text_params = {k: _text_param(v) for k, v in (params or {}).items()}
        with self._lock:
            try:
                result = self._session.query(sql, fmt, params=text_params or None)
            except Exception as exc:
                self._drain()
                raise WarehouseError(str(exc).strip()) from exc
        return bytes(result.bytes()) if result is not None else b""

    def _drain(self) -> None:
        """After a query failed mid-output, chDB prepends what it had written (e.g. a JSON
        header) to the next query's result; one throwaway query takes it (lock held)."""
        with contextlib.suppress(Exception):  # best effort: the original error is the one to report
            self._session.query("SELECT 1", "CSV")


def _is_bytes(data: InsertColumns) -> bool:
    return isinstance(next(iter(data.values()))[0], bytes)


def _arrow_table(data: InsertColumns) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [pa.array(values, type=pa.binary()) for values in data.values()],
        schema=pa.schema([pa.field(name, pa.binary(), nullable=False) for name in data]),
    )


class _EmbeddedUserQuery:
    """User SQL on chDB: its own connection, `readonly=1` for the whole connection (a second
    statement could not write either), with the limits, and `audit` as current database.

    The guard's parser is a second read-only connection without the limits. Cancelling kills
    the query by the marker comment it starts with, from a separate connection: chDB's own
    stream cancel waits for the query to finish.
    """

    def __init__(self, path: str, params: dict[str, Any], limits: SqlLimits) -> None:
        self._path = path
        self._params = {k: _text_param(v) for k, v in params.items()}
        self._limits = limits
        self._marker = f"/* partnerwatch user sql {uuid.uuid4().hex} */"
        self._cancelled = threading.Event()
        self._connections: list[Any] = []
        self._parser = _ChdbParser(f"{path}?readonly=1&max_execution_time=10")

    def _connect(self, settings: dict[str, int | float]) -> Any:
        from chdb import connect

        options = "&".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
        )
        try:
            connection = connect(f"{self._path}?{options}")
            self._connections.append(connection)
            connection.query("USE audit", "CSV")  # a bare table name is an audit table
        except Exception as exc:
            raise _engine_error(exc) from exc
        return connection

    def format_query(self, sql: str) -> str:
        return self._parser.format_query(sql)

    def parse_json(self, sql: str) -> str:
        return self._parser.parse_json(sql)

    def run(self, sql: str) -> QueryResult:
        if self._cancelled.is_set():
            raise WarehouseError("the query was cancelled", 394)
        connection = self._connect({"readonly": 1, **self._limits.engine_settings()})
        try:
            stream = connection.send_query(
                f"{self._marker}\n{sql}", "JSONCompactEachRowWithNamesAndTypes", params=self._params
            )
            header: list[Any] = [[], []]
            rows: list[Any] = []
            size = 0
            for chunk in stream:  # chDB formats each chunk on its own: names and types, then rows
                data = bytes(chunk.bytes())
                size += len(data)
                if size > self._limits.max_result_bytes:  # our own bound on the answer as JSON
                    stream.cancel()
                    raise WarehouseError(
                        f"the result as JSON is larger than {self._limits.max_result_bytes} bytes",
                        396,
                    )
                lines = [line for line in data.split(b"\n") if line]
                header = (
                    [orjson.loads(lines[0]), orjson.loads(lines[1])] if len(lines) >= 2 else header
                )
                rows.extend(orjson.loads(line) for line in lines[2:])
        except WarehouseError as exc:
            raise self._limits.explain(exc) from None
        except Exception as exc:
            raise self._limits.explain(_engine_error(exc)) from exc
        return QueryResult(header[0], header[1], rows)

    def cancel(self) -> None:
        from chdb import connect

        self._cancelled.set()
        with contextlib.suppress(Exception):  # best effort: max_execution_time bounds it anyway
            admin = connect(self._path)
            try:
                admin.query(
                    "KILL QUERY WHERE startsWith(query, {m:String}) ASYNC",
                    "CSV",
                    params={"m": self._marker},
                )
            finally:
                admin.close()

    def close(self) -> None:
        self._parser.close()
        for connection in self._connections:
            with contextlib.suppress(Exception):
                connection.close()
        self._connections.clear()
