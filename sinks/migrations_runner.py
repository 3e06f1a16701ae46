"""The numbered migrations of `sinks/migrations/` and applying them to a warehouse."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable

import structlog

from pipeline.config import Settings
from sinks.warehouse import Warehouse, WarehouseError

log = structlog.get_logger("sinks.clickhouse")

#: The numbered migrations, package data of `sinks` (read with importlib.resources, so an installed
#: wheel migrates as a checkout does).
MIGRATIONS: Traversable = resources.files("sinks") / "migrations"


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
