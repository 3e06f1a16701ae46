"""`ServerWarehouse` against a real ClickHouse server, over the native protocol.

The local server is Debian's clickhouse-server 18.16 (`infra/clickhouse/server.sh`), too old for
the production schema (DateTime64, codecs, TTL, skip indexes, server-side `{name:Type}`
parameters), so these tests exercise the transport on a table 18.16 accepts: connecting, typed
batched inserts of rows exactly as the pipeline builds them, reconnecting after the server
restarts, and clear `WarehouseError`s. Each run works in its own database, `pwtest_<hex>`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_driver import errors
from structlog.testing import capture_logs

from pipeline.config import REPO_ROOT
from pipeline.event import format_ms
from sinks.audit_store import ch_time
from sinks.clickhouse import QueryResult, Row, ServerWarehouse, WarehouseError

pytestmark = pytest.mark.server

SCRIPT = REPO_ROOT / "infra" / "clickhouse" / "server.sh"
PORT = int(os.environ.get("PW_CH_SERVER_PORT", "19000"))
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00.000Z
BATCH = 5_000
COLUMNS = (
    "(event_id String, account_id String, seq UInt64, occurred_at DateTime('UTC'), "
    "evidence Array(String))"
)


def server(action: str) -> None:
    subprocess.run(["bash", str(SCRIPT), action], check=True, timeout=180)


def url(database: str) -> str:
    return f"clickhouse://default@127.0.0.1:{PORT}/{database}"


def occurred_ms(seq: int) -> int:
    return BASE_MS + seq * 1_237  # milliseconds vary, so truncation to DateTime's seconds shows


def rows(start: int, count: int) -> list[Row]:
    """Rows as the pipeline produces them: JSON-friendly, timestamps `YYYY-MM-DD HH:MM:SS.mmm`."""
    return [
        {
            "event_id": f"evt-{seq:08d}",
            "account_id": f"acct-{seq % 7}",
            "seq": seq,
            "occurred_at": ch_time(format_ms(occurred_ms(seq))),
            "evidence": [f"evt-{e:08d}" for e in range(max(0, seq - 2), seq)],
        }
        for seq in range(start, start + count)
    ]


def scalar(warehouse: ServerWarehouse, sql: str) -> Any:
    return warehouse.query(sql).rows[0][0]


@pytest.fixture(scope="module")
def clickhouse_server() -> Iterator[None]:
    server("start")
    try:
        yield
    finally:
        server("stop")


@pytest.fixture(scope="module")
def database(clickhouse_server: None) -> Iterator[str]:
    name = f"pwtest_{secrets.token_hex(6)}"
    admin = ServerWarehouse(url("default"))
    admin.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
    try:
        yield name
    finally:
        with contextlib.suppress(WarehouseError):
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture()
def warehouse(database: str) -> Iterator[ServerWarehouse]:
    warehouse = ServerWarehouse(url(database), retries=8, retry_delay=0.5)
    yield warehouse
    warehouse.close()


def new_table(warehouse: ServerWarehouse, database: str, name: str) -> str:
    table = f"{database}.{name}"
    warehouse.execute(
        f"CREATE TABLE {table} {COLUMNS} ENGINE = MergeTree ORDER BY (account_id, seq)"
    )
    return table


def assert_stored(warehouse: ServerWarehouse, table: str, count: int) -> None:
    """Exactly rows(0, count): no row lost, none doubled by a retry."""
    assert scalar(warehouse, f"SELECT count() FROM {table}") == count
    assert scalar(warehouse, f"SELECT uniqExact(event_id) FROM {table}") == count
    assert scalar(warehouse, f"SELECT sum(seq) FROM {table}") == count * (count - 1) // 2


def test_connects_and_reports_the_server_version(warehouse: ServerWarehouse) -> None:
    result = warehouse.query("SELECT version()")
    assert isinstance(result, QueryResult)
    assert result.columns == ["version()"]
    assert result.types == ["String"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", result.rows[0][0])


def test_batched_insert_of_pipeline_rows(warehouse: ServerWarehouse, database: str) -> None:
    table = new_table(warehouse, database, "batched")
    for batch in range(4):
        warehouse.insert(table, rows(batch * BATCH, BATCH))
    total = 4 * BATCH

    assert_stored(warehouse, table, total)
    # Timestamps: UTC, truncated to DateTime's whole seconds, no shift by any local time zone.
    expected_seconds = sum(occurred_ms(seq) // 1000 for seq in range(total))
    assert (
        scalar(warehouse, f"SELECT sum(toUnixTimestamp(occurred_at)) FROM {table}")
        == expected_seconds
    )
    assert (
        scalar(warehouse, f"SELECT toString(occurred_at) FROM {table} WHERE seq = 12345")
        == ch_time(format_ms(occurred_ms(12345)))[:19]
    )
    # Arrays and the table's order: per account, seq ascending.
    assert scalar(warehouse, f"SELECT sum(length(evidence)) FROM {table}") == 2 * total - 3
    result = warehouse.query(
        f"SELECT seq, evidence FROM {table} WHERE account_id = 'acct-3' ORDER BY account_id, seq LIMIT 3"
    )
    assert result.rows == [
        [3, ["evt-00000001", "evt-00000002"]],
        [10, ["evt-00000008", "evt-00000009"]],
        [17, ["evt-00000015", "evt-00000016"]],
    ]
    per_account = warehouse.query(
        f"SELECT account_id, count() FROM {table} GROUP BY account_id ORDER BY account_id"
    )
    assert per_account.rows == [[f"acct-{a}", len(range(a, total, 7))] for a in range(7)]
    assert warehouse.query(f"SELECT occurred_at FROM {table} LIMIT 1").types == ["DateTime('UTC')"]


def test_reconnects_after_a_server_restart(warehouse: ServerWarehouse, database: str) -> None:
    table = new_table(warehouse, database, "restarted")
    warehouse.insert(table, rows(0, BATCH))
    server("restart")
    warehouse.insert(table, rows(BATCH, BATCH))  # the same object, its connection now stale
    assert_stored(warehouse, table, 2 * BATCH)


def test_retries_an_insert_until_the_server_is_back(
    warehouse: ServerWarehouse, database: str
) -> None:
    table = new_table(warehouse, database, "retried")
    warehouse.insert(table, rows(0, BATCH))
    server("stop")
    failures: list[BaseException] = []

    def start_later() -> None:
        time.sleep(2)
        try:
            server("start")
        except BaseException as exc:
            failures.append(exc)

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        with capture_logs() as logs:
            warehouse.insert(table, rows(BATCH, BATCH))
    finally:
        starter.join()
    assert not failures
    assert any(entry["event"] == "clickhouse.retry" for entry in logs), "the insert never retried"
    assert_stored(warehouse, table, 2 * BATCH)


def test_bad_query_raises_a_warehouse_error(warehouse: ServerWarehouse, database: str) -> None:
    started = time.monotonic()
    with pytest.raises(WarehouseError, match=r"Code: 47\b") as raised:
        warehouse.query("SELECT no_such_column FROM system.one")
    assert isinstance(raised.value.__cause__, errors.ServerException)
    assert "Stack trace" not in str(raised.value)
    with pytest.raises(WarehouseError, match=r"Code: 60\b"):  # unknown table
        warehouse.insert(f"{database}.no_such_table", rows(0, 1))
    with pytest.raises(WarehouseError, match="not a plain identifier"):
        warehouse.insert("x; DROP DATABASE default", rows(0, 1))
    assert time.monotonic() - started < 5, "server errors must not be retried"
    assert scalar(warehouse, "SELECT 1") == 1  # the connection is still usable


def test_query_parameters_go_to_the_server_or_fail_clearly(warehouse: ServerWarehouse) -> None:
    major, minor = (int(p) for p in scalar(warehouse, "SELECT version()").split(".")[:2])
    if (major, minor) >= (22, 8):
        assert warehouse.query("SELECT {x:String}", {"x": "it's"}).rows == [["it's"]]
    else:  # 18.16: the driver would drop them silently and the server fail on `{x:String}`
        with pytest.raises(WarehouseError, match="too old for query parameters"):
            warehouse.query("SELECT {x:String}", {"x": "it's"})
    assert scalar(warehouse, "SELECT 1") == 1


def test_unreachable_server_raises_a_warehouse_error_in_bounded_time() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    warehouse = ServerWarehouse(
        f"clickhouse://default@127.0.0.1:{port}/default?connect_timeout=1",
        retries=2,
        retry_delay=0.1,
    )
    started = time.monotonic()
    with pytest.raises(WarehouseError, match="unreachable after 3 attempts") as raised:
        warehouse.query("SELECT 1")
    assert time.monotonic() - started < 5
    assert not isinstance(raised.value, errors.Error)
    assert isinstance(raised.value.__cause__, errors.NetworkError)
