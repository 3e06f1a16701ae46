"""The SQL guard (`pipeline/forensics/sql_guard.py`): one SELECT over `audit`, admitted by chDB's own
parser, or refused; checked on a real embedded engine (the table is still there afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.forensics.sql_guard import UnsafeQuery, check_tree
from sinks.clickhouse import EmbeddedWarehouse, QueryResult, SqlLimits, WarehouseError, run_user_sql

LIMITS = SqlLimits(60, 1 << 30, 10_000, 1 << 24, 10**9)

REFUSED = [
    "SELECT 1; DROP TABLE audit.t",
    "SELECT 1;DROP TABLE audit.t;",
    "SELECT $$'$$; DROP TABLE audit.t; SELECT $$'$$",
    "SELECT $x$ ; $x$; DROP TABLE audit.t",
    "SELECT 1 /* ; */ ; DROP TABLE audit.t",
    "SELECT 1 # '\n; DROP TABLE audit.t; SELECT '",
    "SELECT 1 -- '\n; DROP TABLE audit.t; SELECT '",
    "SELECT 1 /* unterminated",
    "SELECT 'unterminated",
    "SELECT 1 SETTINGS readonly=0",
    "SELECT (SELECT 1 SETTINGS max_threads = 1)",
    "SELECT 1 FORMAT TSV",
    "SELECT 1 PARALLEL WITH SELECT 2",
    "DROP TABLE audit.t",
    "INSERT INTO audit.t VALUES (2, 'b')",
    "  ALTER TABLE audit.t DELETE WHERE 1",
    "SHOW TABLES FROM audit",
    "DESCRIBE TABLE audit.t",
    "EXPLAIN SELECT 1",
    "SELECT * FROM (EXPLAIN AST SELECT 1)",
    "SELECT * FROM system.one",
    "SELECT * FROM audit.t AS a JOIN system.one AS b ON 1",
    "SELECT system.one.dummy",
    "SELECT x FROM audit.t WHERE x GLOBAL NOT IN system.one",
    "SELECT count() FROM numbers(10)",
    "SELECT dictGet('d', 'x', 1)",
    "SELECT joinGet('system.j', 'x', 1)",
    "SELECT FILE('/etc/hostname')",
    "SELECT `file`('/etc/hostname')",
    "SELECT * FROM {t:Identifier}",
    "SELECT {c:Identifier} FROM audit.t",
    "SELECT 1 UNION ALL SELECT 2 SETTINGS max_threads = 1",
    "SELECT 1 INTO OUTFILE 'x' COMPRESSION 'gzip'",
    "",
    "   ",
]
ALLOWED: list[tuple[str, dict[str, str], list[list[object]]]] = [
    ("SELECT count() FROM audit.t WHERE a = {a:String}", {"a": "a"}, [[1]]),
    ("SELECT ';' AS semi, 'it''s', `we;ird` FROM (SELECT 1 AS `we;ird`)", {}, [[";", "it's", 1]]),
    ("SELECT 1 -- a comment; with a semicolon", {}, [[1]]),
    ("SELECT 1 # a comment; with a semicolon", {}, [[1]]),
    ("SELECT 1;", {}, [[1]]),
    ("SELECT x FROM t", {}, [[1]]),  # a bare name is an audit table
    ("WITH w AS (SELECT x FROM audit.t) SELECT sum(x) FROM w", {}, [[1]]),
    ("SELECT x FROM audit.t WHERE (x, a) IN t", {}, [[1]]),
    (
        "SELECT x AS `a\nb (alias c)` FROM audit.t",
        {},
        [[1]],
    ),  # any alias: the tree is JSON, not text
    (
        "SELECT a FROM (SELECT e.a AS a FROM audit.t AS e WHERE e.x IN (SELECT x FROM audit.t) UNION ALL SELECT 'z') ORDER BY a",
        {},
        [["a"], ["z"]],
    ),
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


def run(
    warehouse: EmbeddedWarehouse, query: str, params: dict[str, str] | None = None
) -> QueryResult:
    return run_user_sql(warehouse.user_query(params or {}, LIMITS), query)


@pytest.mark.parametrize("query", REFUSED)
def test_unsafe_queries_are_refused_and_change_nothing(
    query: str, warehouse: EmbeddedWarehouse
) -> None:
    with pytest.raises(UnsafeQuery):
        run(warehouse, query)
    assert [[int(v) for v in r] for r in warehouse.query("SELECT count() FROM audit.t").rows] == [
        [1]
    ]


@pytest.mark.parametrize(("query", "params", "rows"), ALLOWED)
def test_read_only_queries_run(
    query: str, params: dict[str, str], rows: list[list[object]], warehouse: EmbeddedWarehouse
) -> None:
    assert run(warehouse, query, params).rows == rows


def test_what_runs_is_the_engines_canonical_text(warehouse: EmbeddedWarehouse) -> None:
    """Comments and spacing go; the column names are ClickHouse's own (same as for the original)."""
    result = run(warehouse, "SELECT  /* c */ x+1 , a   FROM audit.t -- tail")
    assert result.columns == ["plus(x, 1)", "a"]
    assert result.rows == [[2, "a"]]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
        "WITH (SELECT 1) AS x SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ],
)
def test_table_functions_are_refused_by_the_guard(query: str, warehouse: EmbeddedWarehouse) -> None:
    with pytest.raises(UnsafeQuery, match="table functions are refused"):
        run(warehouse, query)


def test_the_tree_must_be_one_select() -> None:
    for tree in ({"type": "ShowTablesQuery"}, {"type": "ExplainQuery"}, [], "SELECT 1", None):
        with pytest.raises(UnsafeQuery, match="only one SELECT"):
            check_tree(tree)
    select = {
        "type": "SelectWithUnionQuery",
        "list_of_selects": {"type": "ExpressionList", "children": []},
    }
    check_tree(select)
    with pytest.raises(UnsafeQuery, match="INTO OUTFILE"):
        check_tree({**select, "is_into_outfile_with_stdout": True})


def test_the_unguarded_engine_would_have_run_the_drop(warehouse: EmbeddedWarehouse) -> None:
    """Why the guard exists: chDB runs every statement of a multi-statement query."""
    warehouse.execute("CREATE TABLE audit.victim (x Int32) ENGINE = MergeTree ORDER BY x")
    warehouse.query("SELECT 1; DROP TABLE audit.victim")
    with pytest.raises(WarehouseError):
        warehouse.query("SELECT count() FROM audit.victim")
