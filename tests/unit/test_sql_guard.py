"""The SQL guard (`pipeline/forensics/sql_guard.py`): one read-only statement, or refused; checked on chDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.forensics.sql_guard import UnsafeQuery, read_only
from sinks.clickhouse import EmbeddedWarehouse, WarehouseError

REFUSED = [
    "SELECT 1; DROP TABLE audit.t",
    "SELECT 1;DROP TABLE audit.t;",
    "SELECT $$'$$; DROP TABLE audit.t; SELECT $$'$$",
    "SELECT $x$ ; $x$; DROP TABLE audit.t",
    "SELECT 1 /* ; */ ; DROP TABLE audit.t",
    "SELECT 1 /* unterminated",
    "SELECT 'unterminated",
    "SELECT 1 SETTINGS readonly=0",
    "DROP TABLE audit.t",
    "INSERT INTO audit.t VALUES (2, 'b')",
    "  ALTER TABLE audit.t DELETE WHERE 1",
]
ALLOWED = [
    "SELECT count() FROM audit.t WHERE a = {a:String}",
    "SELECT ';' AS semi, 'it''s', `we;ird` FROM (SELECT 1 AS `we;ird`)",
    "SELECT 1 -- a comment; with a semicolon",
    "SELECT 1;",
    "SHOW TABLES FROM audit",
    "DESCRIBE TABLE audit.t",
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWarehouse]:
    """One chDB engine per process (and per path): opened once here, closed for the next module."""
    wh = EmbeddedWarehouse(Path(tmp_path_factory.mktemp("guard")))
    wh.execute("CREATE DATABASE IF NOT EXISTS audit")
    wh.execute("CREATE TABLE audit.t (x Int32, a String) ENGINE = MergeTree ORDER BY x")
    wh.execute("INSERT INTO audit.t VALUES (1, 'a')")
    yield wh
    wh.close()


@pytest.mark.parametrize("query", REFUSED)
def test_unsafe_queries_are_refused_and_change_nothing(query: str, warehouse: EmbeddedWarehouse) -> None:
    with pytest.raises(UnsafeQuery):
        read_only(query)
    assert [[int(v) for v in r] for r in warehouse.query("SELECT count() FROM audit.t").rows] == [[1]]


@pytest.mark.parametrize("query", ALLOWED)
def test_read_only_queries_run(query: str, warehouse: EmbeddedWarehouse) -> None:
    warehouse.query(read_only(query), {"a": "a"} if "{a:String}" in query else None)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
        "WITH (SELECT 1) AS x SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ],
)
def test_table_functions_are_refused_by_the_engine(query: str, warehouse: EmbeddedWarehouse) -> None:
    with pytest.raises(WarehouseError, match="readonly"):
        warehouse.query(read_only(query))


def test_the_unguarded_engine_would_have_run_the_drop(warehouse: EmbeddedWarehouse) -> None:
    """Why the guard exists: chDB runs every statement of a multi-statement query."""
    warehouse.execute("CREATE TABLE audit.victim (x Int32) ENGINE = MergeTree ORDER BY x")
    warehouse.query("SELECT 1; DROP TABLE audit.victim")
    with pytest.raises(WarehouseError):
        warehouse.query("SELECT count() FROM audit.victim")
