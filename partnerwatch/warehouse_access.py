"""The warehouse for the read commands (integrity, the query library): a ClickHouse server directly,
the embedded engine directly when no worker holds it, or the running worker's `/v1/sql`.

Composition-root code like `partnerwatch/main.py`: it imports `sinks` inside function bodies.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import typer

from partnerwatch.common import err, plain, post_sql, worker_running
from pipeline.config import Settings
from pipeline.forensics.signing import SigningKeyError


class SqlFailed(RuntimeError):
    """A query through the worker failed."""


@dataclass(frozen=True)
class _Result:
    columns: list[str]
    rows: list[list[Any]]


class WorkerSql:
    """Read-only SQL through the running worker's `/v1/sql` (it owns the embedded engine)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def query(self, sql: str, params: dict[str, Any] | None = None) -> _Result:
        body = orjson.dumps({"query": sql, "params": params or {}})
        headers = {"Content-Type": "application/json"}
        if self.settings.api_token:
            headers["Authorization"] = f"Bearer {self.settings.api_token}"
        try:
            with post_sql(
                f"{self.settings.web_url}/v1/sql", timeout=300, data=body, headers=headers
            ) as response:
                doc = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SqlFailed(orjson.loads(exc.read()).get("error", str(exc))) from None
        return _Result(doc["columns"], doc["rows"])


@contextmanager
def warehouse_access(settings: Settings, *, write: bool = False) -> Iterator[Any]:
    """The warehouse to use: a server directly; the embedded engine directly, or via the worker."""
    from partnerwatch.preflight import (
        check_embedded_exists,
        check_migrated,
        one_line,
        say_warehouse,
    )
    from sinks.clickhouse import WarehouseError, open_warehouse

    if not settings.clickhouse_url and worker_running(settings):
        if write:
            err.print(
                "[red]the worker owns the embedded warehouse:[/] it creates digests itself every "
                "PW_DIGEST_INTERVAL seconds when a digest key is set; stop it to run this command"
            )
            raise typer.Exit(1)
        say_warehouse(settings, via_worker=True)
        yield WorkerSql(settings)
        return
    # Only `partnerwatch migrate` and the worker create or migrate a warehouse (partnerwatch/preflight.py).
    check_embedded_exists(settings)
    say_warehouse(settings, via_worker=False)
    try:
        warehouse = open_warehouse(settings)
    except WarehouseError as exc:
        err.print(plain(one_line(exc), "red"), soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        check_migrated(warehouse, settings)
    except BaseException:
        warehouse.close()
        raise
    try:
        yield warehouse
    finally:
        warehouse.close()


@contextmanager
def one_line_failures() -> Iterator[None]:
    """Warehouse and key errors as a one-line message and exit code 1."""
    from sinks.clickhouse import WarehouseError

    try:
        yield
    except (WarehouseError, SqlFailed, SigningKeyError) as exc:
        from partnerwatch.preflight import one_line

        err.print(plain(one_line(exc), "red"), soft_wrap=True)
        raise typer.Exit(1) from None
