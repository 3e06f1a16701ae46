"""Where a row is written: the warehouse, one interface over two ClickHouse backends.

- `EmbeddedWarehouse`: chDB, ClickHouse in-process on disk; the default, needs no server. The
  engine locks its folder to one process, so while the worker runs, other processes query through
  the worker's `/v1/sql` endpoint (see `partnerwatch.main sql`).
- `ServerWarehouse`: clickhouse-driver over the native protocol to a ClickHouse server; the
  production path (`PW_CLICKHOUSE_URL=clickhouse://user:pass@host:9000/db`).

Both take the same SQL, with server-side `{name:Type}` parameters (never string formatting), and
the same migrations, shipped with this package in `sinks/migrations/`. Rows are dicts of JSON-friendly values;
timestamps are `YYYY-MM-DD HH:MM:SS.mmm` strings in UTC.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

import orjson
import structlog

from pipeline.config import Settings, redact_url
from pipeline.event import timestamp_ms

log = structlog.get_logger(__name__)

#: The numbered migrations, package data of `sinks` (read with importlib.resources, so an installed
#: wheel migrates as a checkout does).
MIGRATIONS: Traversable = resources.files("sinks") / "migrations"
Row = dict[str, Any]


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
        self, table: str, columns: Sequence[str], select: str, data: dict[str, list[str]]
    ) -> None:
        """`INSERT INTO table (columns) <select>`, where `select` reads `{source}`: a table of the
        String columns `data` (equal lengths). ClickHouse computes the rows (parses, converts)."""
        ...

    def close(self) -> None: ...

    def user_query(self, params: dict[str, Any], limits: SqlLimits) -> UserQuery: ...


# -- user SQL: the engine's parser for the guard, read-only connections, limits, cancellation ------


@dataclass(frozen=True)
class SqlLimits:
    """What one user query may use (PW_SQL_* settings); the engine enforces each one."""

    max_execution_time: float
    max_memory_usage: int
    max_result_rows: int
    max_result_bytes: int
    max_rows_to_read: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlLimits:
        return cls(
            max_execution_time=settings.sql_max_execution_time,
            max_memory_usage=settings.sql_max_memory_usage,
            max_result_rows=settings.sql_max_result_rows,
            max_result_bytes=settings.sql_max_result_bytes,
            max_rows_to_read=settings.sql_max_rows_to_read,
        )

    def engine_settings(self) -> dict[str, int | float]:
        return {
            "max_execution_time": self.max_execution_time,
            "max_memory_usage": self.max_memory_usage,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "max_rows_to_read": self.max_rows_to_read,
            # The outermost SELECT stops one row past the limit, so max_result_rows fires even where
            # the engine would check it only after building one huge block (arrayJoin(range(...))).
            "limit": self.max_result_rows + 1,
        }

    def explain(self, error: WarehouseError) -> WarehouseError:
        """The engine's error for a limit, led by which setting stopped the query."""
        hint = {
            159: f"the query ran longer than PW_SQL_MAX_EXECUTION_TIME ({self.max_execution_time:g} s)",
            241: f"the query needed more memory than PW_SQL_MAX_MEMORY_USAGE ({self.max_memory_usage} bytes)",
            158: f"the query reads more rows than PW_SQL_MAX_ROWS_TO_READ ({self.max_rows_to_read})",
            396: f"the result is larger than PW_SQL_MAX_RESULT_ROWS ({self.max_result_rows} rows) or "
            f"PW_SQL_MAX_RESULT_BYTES ({self.max_result_bytes} bytes): aggregate, or add a LIMIT",
            394: "the query was cancelled",
        }.get(error.code or 0)
        return WarehouseError(f"{hint}. {error}", error.code) if hint else error


class UserQuery(Protocol):
    """One user query on its own read-only connection: the guard's parser, then the run.

    `cancel()` may be called from another thread (the client went away); `close()` always.
    """

    def format_query(self, sql: str) -> str: ...

    def parse_json(self, sql: str) -> str: ...

    def run(self, sql: str) -> QueryResult: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


def run_user_sql(job: UserQuery, query: str) -> QueryResult:
    """Admit `query` with the engine's own parser (pipeline/forensics/sql_guard.py), then run the
    canonical text it returns, never the text as sent; `UnsafeQuery` when refused."""
    from pipeline.forensics.sql_guard import admit

    try:
        return job.run(admit(query, job))
    finally:
        job.close()


_CODE = re.compile(r"Code: (\d+)\.")


def _engine_error(exc: BaseException) -> WarehouseError:
    text = str(exc).strip()
    match = _CODE.search(text)
    return WarehouseError(text, int(match.group(1)) if match else None)


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
            self._session = session.Session(f"{path}?user_files_path={self.user_files}")
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
        self, table: str, columns: Sequence[str], select: str, data: dict[str, list[str]]
    ) -> None:
        """The String columns reach the engine as Python objects (chDB's `Python()` table function
        reads this frame's `pw_insert_source` by name): no text format, no escaping."""
        if not data or not next(iter(data.values())):
            return
        pw_insert_source = data  # noqa: F841  # read by name by the engine
        sql = _insert_select_sql(table, columns, select, "Python(pw_insert_source)")
        with self._lock:
            try:
                self._session.query(sql, "CSV")
            except Exception as exc:
                self._drain()
                raise WarehouseError(str(exc).strip()) from exc

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


# -- ClickHouse server (native protocol) ----------------------------------------------------------


class ServerWarehouse:
    """A ClickHouse server over the native protocol, reconnecting after the server restarts.

    Query parameters go to the server (`{name:Type}`), which needs protocol revision 54459
    (ClickHouse 22.8+); older servers get a clear error for a query with parameters, while
    queries without parameters and inserts work on any server the driver speaks to.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 5,
        retry_delay: float = 0.5,
        reader: tuple[str, str] | None = None,
    ) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        if parsed.scheme not in ("clickhouse", "clickhouses"):
            raise WarehouseError(
                f"PW_CLICKHOUSE_URL must start with clickhouse://, got {parsed.scheme}://"
            )
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.database = parsed.path.lstrip("/") or "default"
        self.user = unquote(parsed.username or "default")
        self._connection = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 9000,
            "secure": parsed.scheme == "clickhouses",
            "connect_timeout": float(options.get("connect_timeout", 5)),
        }
        self._client = Client(
            **self._connection,
            user=self.user,
            password=unquote(parsed.password or ""),
            database=self.database,
            send_receive_timeout=float(options.get("timeout", 60)),
            settings={"server_side_params": True},
        )
        #: (user, password) of the read-only user that user SQL runs as (PW_CLICKHOUSE_READER_*)
        self.reader = reader
        self._password = unquote(parsed.password or "")
        self._retries = retries
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._types: dict[str, dict[str, str]] = {}

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._call(lambda: self._run(sql, params))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        rows, meta = self._call(lambda: self._run(sql, params, with_column_types=True))
        return QueryResult([m[0] for m in meta], [m[1] for m in meta], [list(r) for r in rows])

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        types = self._column_types(table)
        columns = list(rows[0].keys())
        data = [tuple(_to_native(r.get(c), types.get(c, "")) for c in columns) for r in rows]
        sql = f"INSERT INTO {_identifier(table)} ({', '.join(_identifier(c) for c in columns)}) VALUES"
        self._call(lambda: self._client.execute(sql, data))

    def insert_select(
        self, table: str, columns: Sequence[str], select: str, data: dict[str, list[str]]
    ) -> None:
        """The String columns go to the server in native blocks, read by `input()`."""
        if not data or not next(iter(data.values())):
            return
        structure = ", ".join(f"{_identifier(name)} String" for name in data)
        sql = _insert_select_sql(table, columns, select, f"input('{structure}')")
        rows = list(zip(*data.values(), strict=True))
        # Not retried here: an insert whose answer was lost may have landed. The caller retries
        # knowing that (the loader checks such a batch against the table before inserting again).
        self._call(lambda: self._client.execute(sql, rows), retries=0)

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()

    def user_query(self, params: dict[str, Any], limits: SqlLimits) -> UserQuery:
        """A user query as the read-only user (never the writer), on a connection of its own."""
        if self.reader is None or not self.reader[0]:
            raise WarehouseError(
                "user SQL needs the read-only ClickHouse user: set PW_CLICKHOUSE_READER_USER"
            )
        if self.reader[0] == self.user:
            raise WarehouseError(
                f"PW_CLICKHOUSE_READER_USER is the writer ({self.user}): user SQL runs as the "
                "read-only user of infra/clickhouse/access.sql, never as the writer"
            )
        return _ServerUserQuery(self._connection, self.reader, params, limits)

    def _run(self, sql: str, params: dict[str, Any] | None, **kwargs: Any) -> Any:
        if params:
            # The driver silently drops parameters for a server older than the protocol revision
            # that carries them, and the server then fails on `{name:Type}` as a syntax error.
            connection = self._client.connection
            if not connection.connected:
                connection.connect()
            info = connection.server_info
            if info.used_revision < _REVISION_WITH_PARAMETERS:
                raise WarehouseError(
                    f"ClickHouse server {info.version_major}.{info.version_minor}.{info.version_patch} "
                    "is too old for query parameters over the native protocol (22.8 or later)"
                )
        return self._client.execute(sql, params or None, **kwargs)

    def _scrub(self, text: str) -> str:
        """An error for logs and answers: no password, whether in a URL or echoed on its own."""
        text = redact_url(text)
        return text.replace(self._password, "***") if self._password else text

    def _column_types(self, table: str) -> dict[str, str]:
        # DESCRIBE, not system.columns with parameters: it needs none, so it works on any server.
        if table not in self._types:
            result = self.query(f"DESCRIBE TABLE {_identifier(table)}")
            self._types[table] = {r[0]: r[1] for r in result.rows}
        return self._types[table]

    def _call(self, fn: Callable[[], Any], retries: int | None = None) -> Any:
        from clickhouse_driver import errors

        delay = self._retry_delay
        retries = self._retries if retries is None else retries
        for attempt in range(retries + 1):
            with self._lock:
                try:
                    return fn()
                except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
                    self._client.disconnect()
                    failure: Exception = exc
                except errors.Error as exc:
                    # Old servers append a stack trace to the message; keep the first part.
                    message = " ".join(str(exc).split("Stack trace:")[0].split())
                    raise WarehouseError(self._scrub(message)) from exc
            if attempt == retries:
                raise WarehouseError(
                    self._scrub(
                        f"ClickHouse server unreachable after {attempt + 1} attempts: {failure}"
                    )
                ) from failure
            log.warning("clickhouse.retry", attempt=attempt + 1, error=self._scrub(str(failure)))
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")


class _ServerUserQuery:
    """User SQL on a ClickHouse server, as the read-only user, in the `audit` database.

    chDB's parser checks it (`_server_side_parser`), the server runs the canonical text. The
    reader's profile must be readonly (checked before each run) and let the limits be lowered
    (`CHANGEABLE_IN_READONLY` in infra/clickhouse/access.sql). Cancelling closes the socket: the
    server cancels a query whose client has gone.
    """

    def __init__(
        self,
        connection: dict[str, Any],
        reader: tuple[str, str],
        params: dict[str, Any],
        limits: SqlLimits,
    ) -> None:
        from clickhouse_driver import Client

        self._params = params
        self._limits = limits
        self._password = reader[1]
        self._cancelled = threading.Event()
        self._client = Client(
            **connection,
            user=reader[0],
            password=reader[1],
            database="audit",
            send_receive_timeout=limits.max_execution_time + 30,
            settings={"server_side_params": True},
        )

    def _execute(self, sql: str, params: dict[str, Any] | None, **kwargs: Any) -> Any:
        from clickhouse_driver import errors

        try:
            return self._client.execute(sql, params or None, **kwargs)
        except errors.ServerException as exc:
            message = " ".join(str(exc).split("Stack trace:")[0].split())
            raise WarehouseError(self._scrub(message), exc.code) from None
        except (errors.Error, EOFError, OSError) as exc:
            if self._cancelled.is_set():
                raise WarehouseError("the query was cancelled", 394) from None
            raise WarehouseError(self._scrub(f"ClickHouse server unreachable: {exc}")) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def format_query(self, sql: str) -> str:
        return _server_side_parser().format_query(sql)

    def parse_json(self, sql: str) -> str:
        return _server_side_parser().parse_json(sql)

    def run(self, sql: str) -> QueryResult:
        readonly = self._execute("SELECT toUInt8(getSetting('readonly'))", None)[0][0]
        if not readonly:
            raise WarehouseError(
                "the PW_CLICKHOUSE_READER_USER user is not read-only (readonly=0): give it the "
                "partnerwatch_readonly profile of infra/clickhouse/access.sql"
            )
        if self._cancelled.is_set():
            raise WarehouseError("the query was cancelled", 394)
        try:
            rows, meta = self._execute(
                sql, self._params, with_column_types=True, settings=self._limits.engine_settings()
            )
        except WarehouseError as exc:
            raise self._limits.explain(exc) from None
        return QueryResult([m[0] for m in meta], [m[1] for m in meta], [list(r) for r in rows])

    def cancel(self) -> None:
        self._cancelled.set()
        sock = getattr(self._client.connection, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()


# clickhouse_driver.defines.DBMS_MIN_PROTOCOL_VERSION_WITH_PARAMETERS (ClickHouse 22.8)
_REVISION_WITH_PARAMETERS = 54459
_UTC_OFFSET = re.compile(r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_native(value: Any, ch_type: str) -> Any:
    """Convert a JSON-friendly row value for clickhouse-driver's typed insert.

    A timestamp string (`YYYY-MM-DD HH:MM:SS[.mmm]`, UTC unless it carries an offset) becomes an
    aware UTC datetime for a DateTime/DateTime64 column, in exact integer milliseconds.
    """
    if "DateTime" in ch_type and isinstance(value, str):
        text = value if _UTC_OFFSET.search(value) else value + "Z"
        try:
            return _EPOCH + timedelta(milliseconds=timestamp_ms(text, "value"))
        except ValueError as exc:
            raise WarehouseError(f"not a timestamp for a {ch_type} column: {value!r}") from exc
    return value


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


# -- opening, migrating ---------------------------------------------------------------------------


def open_warehouse(settings: Settings) -> Warehouse:
    """The configured backend: a server when PW_CLICKHOUSE_URL is set, else embedded chDB."""
    if settings.clickhouse_url:
        reader = (settings.clickhouse_reader_user, settings.clickhouse_reader_password)
        return ServerWarehouse(settings.clickhouse_url, reader=reader)
    return EmbeddedWarehouse(settings.warehouse_path)


def migrations(directory: Traversable = MIGRATIONS) -> list[tuple[int, str, str]]:
    """Numbered migrations `NNNN_name.sql`, in order, as (version, name, sql)."""
    found = []
    files = (
        [f for f in directory.iterdir() if f.name.endswith(".sql")] if directory.is_dir() else []
    )
    for path in sorted(files, key=lambda f: f.name):
        number, _, name = path.name.removesuffix(".sql").partition("_")
        found.append((int(number), name, path.read_text(encoding="utf-8")))
    if not found:
        raise WarehouseError(
            f"no migrations (*.sql) in {directory}: is the `sinks` package data installed?"
        )
    return found


def migrate(
    warehouse: Warehouse, settings: Settings, directory: Traversable = MIGRATIONS
) -> list[str]:
    """Apply the migrations not yet applied; return the names of those applied now.

    Migrations may use `${PW_RETENTION_DAYS}`, substituted with the validated integer setting
    (DDL takes no query parameters).
    """
    for statement in bootstrap_ddl(settings):
        warehouse.execute(statement)
    done = {r[0] for r in warehouse.query("SELECT version FROM audit.schema_migrations").rows}
    applied = []
    for version, name, statements in migration_ddl(settings, directory):
        if version in done:
            continue
        for statement in statements:
            warehouse.execute(statement)
        warehouse.insert("audit.schema_migrations", [{"version": version, "name": name}])
        applied.append(f"{version:04d}_{name}")
        log.info("warehouse.migrated", migration=f"{version:04d}_{name}")
    return applied


def bootstrap_ddl(settings: Settings) -> list[str]:
    """The database and the migrations table; `ON CLUSTER` when PW_CLICKHOUSE_CLUSTER is set."""
    if settings.clickhouse_cluster:
        from sinks.cluster_ddl import bootstrap_statements

        return bootstrap_statements(settings.clickhouse_cluster)
    return [
        "CREATE DATABASE IF NOT EXISTS audit",
        "CREATE TABLE IF NOT EXISTS audit.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version",
    ]


def migration_ddl(
    settings: Settings, directory: Traversable = MIGRATIONS
) -> list[tuple[int, str, list[str]]]:
    """Every migration as (version, name, statements) ready to run, in order.

    `${PW_RETENTION_DAYS}` is substituted with the validated integer setting (DDL takes no query
    parameters). With PW_CLICKHOUSE_CLUSTER set, statements are rendered for the cluster
    (sinks/cluster_ddl.py: Replicated local tables, Distributed tables, ON CLUSTER).
    """
    days = str(int(settings.retention_days))
    plain = [
        (v, n, list(_statements(sql.replace("${PW_RETENTION_DAYS}", days))))
        for v, n, sql in migrations(directory)
    ]
    if not settings.clickhouse_cluster:
        return plain
    from sinks.cluster_ddl import render_all, sharded_tables

    sharded = sharded_tables(s for _, _, statements in plain for s in statements)
    return [
        (v, n, render_all(statements, settings.clickhouse_cluster, sharded))
        for v, n, statements in plain
    ]


def _statements(sql: str) -> Iterable[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
