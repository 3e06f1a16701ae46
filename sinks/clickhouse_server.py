"""The ClickHouse server backend: clickhouse-driver over the native protocol.

The production path (`PW_CLICKHOUSE_URL=clickhouse://user:pass@host:9000/db`).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import structlog

from pipeline.config import redact_url
from pipeline.event import timestamp_ms
from sinks.clickhouse_embedded import _server_side_parser
from sinks.user_sql import SqlLimits, UserQuery
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
        self._call(lambda: self._client.execute(sql, data, settings=self._insert_settings()))

    def insert_select(
        self, table: str, columns: Sequence[str], select: str, data: InsertColumns
    ) -> None:
        """The String columns go to the server in native blocks, read by `input()` (bytes as
        they are: the driver's `strings_as_bytes`)."""
        if not data or not next(iter(data.values())):
            return
        structure = ", ".join(f"{_identifier(name)} String" for name in data)
        sql = _insert_select_sql(table, columns, select, f"input('{structure}')")
        rows = list(zip(*data.values(), strict=True))
        settings = self._insert_settings()
        if isinstance(rows[0][0], bytes):
            settings = {**settings, "strings_as_bytes": True}
        # Not retried here: an insert whose answer was lost may have landed. The caller retries
        # knowing that (the loader checks such a batch against the table before inserting again).
        self._call(lambda: self._client.execute(sql, rows, settings=settings), retries=0)

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

    def _insert_settings(self) -> dict[str, Any]:
        """Settings of every insert (called with the lock held). A server older than 20 does not
        know `max_partitions_per_insert_block` (the local test server is 18.16): nothing then."""
        connection = self._client.connection
        if not connection.connected:
            connection.connect()
        if connection.server_info.version_major < 20:
            return {}
        return {"max_partitions_per_insert_block": MAX_PARTITIONS_PER_INSERT}

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
