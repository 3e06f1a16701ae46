"""Where a row is written: the warehouse, one interface over two ClickHouse backends.

- `EmbeddedWarehouse`: chDB, ClickHouse in-process on disk; the default, needs no server. The
  engine locks its folder to one process (the worker's loader child by default), so while the
  worker runs, other processes query through the worker's `/v1/sql` endpoint (see
  `partnerwatch.main sql`), and the worker itself through its child
  (`sinks.warehouse_remote.RemoteWarehouse`, PW_WAREHOUSE_LOADER=process).
- `ServerWarehouse`: clickhouse-driver over the native protocol to a ClickHouse server; the
  production path (`PW_CLICKHOUSE_URL=clickhouse://user:pass@host:9000/db`).

Both take the same SQL, with server-side `{name:Type}` parameters (never string formatting), and
the same migrations, shipped with this package in `sinks/migrations/`. Rows are dicts of JSON-friendly values;
timestamps are `YYYY-MM-DD HH:MM:SS.mmm` strings in UTC.
"""

from __future__ import annotations

from pipeline.config import Settings
from sinks.clickhouse_embedded import EmbeddedWarehouse
from sinks.clickhouse_server import ServerWarehouse
from sinks.migrations_runner import (
    MIGRATIONS,
    bootstrap_ddl,
    migrate,
    migration_ddl,
    migrations,
)
from sinks.user_sql import SqlLimits, UserQuery, run_user_sql
from sinks.warehouse import QueryResult, Row, Warehouse, WarehouseError

__all__ = [
    "MIGRATIONS",
    "EmbeddedWarehouse",
    "QueryResult",
    "Row",
    "ServerWarehouse",
    "SqlLimits",
    "UserQuery",
    "Warehouse",
    "WarehouseError",
    "bootstrap_ddl",
    "migrate",
    "migration_ddl",
    "migrations",
    "open_warehouse",
    "run_user_sql",
]


def open_warehouse(settings: Settings) -> Warehouse:
    """The configured backend: a server when PW_CLICKHOUSE_URL is set, else embedded chDB."""
    if settings.clickhouse_url:
        reader = (settings.clickhouse_reader_user, settings.clickhouse_reader_password)
        return ServerWarehouse(settings.clickhouse_url, reader=reader)
    return EmbeddedWarehouse(settings.warehouse_path)
