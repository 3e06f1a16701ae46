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
import threading
import time
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
    """A warehouse operation failed; the message says which and why."""


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

    def close(self) -> None: ...


# -- embedded (chDB) ----------------------------------------------------------------------------


#: ClickHouse reads a parameter's text in its escaped (TSV) format: a raw newline or tab ends the
#: value (the query fails) and `\n` is read as a newline (another value is matched).
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"})


def _text_param(value: Any) -> str:
    """A parameter in ClickHouse's text format, as chDB expects for `{name:Type}`."""
    if isinstance(value, str):
        return value.translate(_TEXT_ESCAPES)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_quoted(v) for v in value) + "]"
    raise WarehouseError(f"unsupported query parameter type {type(value).__name__}")


def _quoted(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.translate(_TEXT_ESCAPES).replace("'", "\\'") + "'"
    return _text_param(value)


class EmbeddedWarehouse:
    """chDB on disk. One session per process; calls are serialized by a lock."""

    def __init__(self, path: Path) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(path))
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
        return QueryResult([m["name"] for m in meta], [m["type"] for m in meta], doc.get("data", []))

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        body = b"\n".join(orjson.dumps(r) for r in rows).decode()
        self._run(f"INSERT INTO {_identifier(table)} FORMAT JSONEachRow\n{body}", "CSV", None)

    def close(self) -> None:
        with self._lock:
            self._session.close()

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


# -- ClickHouse server (native protocol) ----------------------------------------------------------


class ServerWarehouse:
    """A ClickHouse server over the native protocol, reconnecting after the server restarts.

    Query parameters go to the server (`{name:Type}`), which needs protocol revision 54459
    (ClickHouse 22.8+); older servers get a clear error for a query with parameters, while
    queries without parameters and inserts work on any server the driver speaks to.
    """

    def __init__(self, url: str, *, retries: int = 5, retry_delay: float = 0.5) -> None:
        from clickhouse_driver import Client

        parsed = urlparse(url)
        if parsed.scheme not in ("clickhouse", "clickhouses"):
            raise WarehouseError(f"PW_CLICKHOUSE_URL must start with clickhouse://, got {parsed.scheme}://")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.database = parsed.path.lstrip("/") or "default"
        self._client = Client(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            database=self.database,
            secure=parsed.scheme == "clickhouses",
            connect_timeout=float(options.get("connect_timeout", 5)),
            send_receive_timeout=float(options.get("timeout", 60)),
            settings={"server_side_params": True},
        )
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

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()

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

    def _call(self, fn: Callable[[], Any]) -> Any:
        from clickhouse_driver import errors

        delay = self._retry_delay
        for attempt in range(self._retries + 1):
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
            if attempt == self._retries:
                raise WarehouseError(
                    self._scrub(f"ClickHouse server unreachable after {attempt + 1} attempts: {failure}")
                ) from failure
            log.warning("clickhouse.retry", attempt=attempt + 1, error=self._scrub(str(failure)))
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")


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


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise WarehouseError(f"not a plain identifier: {name!r}")
    return name


# -- opening, migrating ---------------------------------------------------------------------------


def open_warehouse(settings: Settings) -> Warehouse:
    """The configured backend: a server when PW_CLICKHOUSE_URL is set, else embedded chDB."""
    if settings.clickhouse_url:
        return ServerWarehouse(settings.clickhouse_url)
    return EmbeddedWarehouse(settings.warehouse_path)


def migrations(directory: Traversable = MIGRATIONS) -> list[tuple[int, str, str]]:
    """Numbered migrations `NNNN_name.sql`, in order, as (version, name, sql)."""
    found = []
    files = [f for f in directory.iterdir() if f.name.endswith(".sql")] if directory.is_dir() else []
    for path in sorted(files, key=lambda f: f.name):
        number, _, name = path.name.removesuffix(".sql").partition("_")
        found.append((int(number), name, path.read_text(encoding="utf-8")))
    if not found:
        raise WarehouseError(f"no migrations (*.sql) in {directory}: is the `sinks` package data installed?")
    return found


def migrate(warehouse: Warehouse, settings: Settings, directory: Traversable = MIGRATIONS) -> list[str]:
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


def migration_ddl(settings: Settings, directory: Traversable = MIGRATIONS) -> list[tuple[int, str, list[str]]]:
    """Every migration as (version, name, statements) ready to run, in order.

    `${PW_RETENTION_DAYS}` is substituted with the validated integer setting (DDL takes no query
    parameters). With PW_CLICKHOUSE_CLUSTER set, statements are rendered for the cluster
    (sinks/cluster_ddl.py: Replicated local tables, Distributed tables, ON CLUSTER).
    """
    days = str(int(settings.retention_days))
    plain = [(v, n, list(_statements(sql.replace("${PW_RETENTION_DAYS}", days)))) for v, n, sql in migrations(directory)]
    if not settings.clickhouse_cluster:
        return plain
    from sinks.cluster_ddl import render_all, sharded_tables

    sharded = sharded_tables(s for _, _, statements in plain for s in statements)
    return [(v, n, render_all(statements, settings.clickhouse_cluster, sharded)) for v, n, statements in plain]


def _statements(sql: str) -> Iterable[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
