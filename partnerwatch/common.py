"""What every command module shares: the settings, or a clear error, and whether a worker answers."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.config import Settings
from pipeline.logs import configure_logging

console = Console()
err = Console(stderr=True)

#: The local Kafka runner, package data (with its pom.xml and log4j2.properties), so it runs from
#: an installed wheel as from a checkout. Its cache is outside the package (see the script).
KAFKA_SH = Path(str(resources.files("partnerwatch") / "kafka_runner" / "kafka.sh"))


def kafka_runner(settings: Settings, action: str, quiet: bool = False) -> int:
    """Run the local Kafka runner (`start`, `stop`, ...); its exit status, or 1 with a clear message.

    The runner gets PW_KAFKA_BROKER as Settings resolved it (environment, PW_ENV_FILE or default)
    and listens on its port, so the broker is where the clients will connect."""
    if not KAFKA_SH.is_file():
        err.print(f"[red]the local Kafka runner is missing:[/] {escape(str(KAFKA_SH))} (partnerwatch installed without its package data?)")
        return 1
    env = {**os.environ, "PW_KAFKA_BROKER": settings.kafka_broker}
    # A fixed command (S603, S607): the packaged runner under the system's bash; `action` is one
    # argument (no shell), and the script refuses any but fetch/start/stop/status/reset.
    return subprocess.call(["bash", str(KAFKA_SH), action], env=env, stdout=subprocess.DEVNULL if quiet else None)  # noqa: S603, S607


def http_open(url: str, timeout: float, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """`urlopen` for the worker's own HTTP API (a POST when `data` is given): http and https URLs
    only, so an address built from settings can never open a `file:` or other URL."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 (scheme checked above)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked above)


def load_settings(**overrides: Any) -> Settings:
    """`Settings.from_env()`, and logging configured from it (once per command); a bad PW_* value
    exits 2 with one line that names the variable."""
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    return settings


def worker_running(settings: Settings) -> bool:
    """The worker answers on its web port (it then owns the embedded warehouse)."""
    try:
        with http_open(f"{settings.web_url}/v1/health", timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def parse_params(params: list[str]) -> dict[str, str]:
    out = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes key=value, got {item!r}")
        out[key] = value
    return out


def run_query(settings: Settings, query: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Run a read-only query through the worker when it runs (it owns the embedded engine), else directly."""
    body = orjson.dumps({"query": query, "params": params})
    headers = {"Content-Type": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    try:
        with http_open(f"{settings.web_url}/v1/sql", timeout=60, data=body, headers=headers) as response:
            doc = orjson.loads(response.read())
            return doc["columns"], doc["rows"]
    except urllib.error.HTTPError as exc:
        message = orjson.loads(exc.read()).get("error", str(exc))
        err.print(f"[red]query failed:[/] {escape(str(message))}")
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # no worker: open the warehouse here
    from pipeline.forensics.sql_guard import UnsafeQuery, read_only
    from sinks.clickhouse import WarehouseError, open_warehouse

    try:
        safe = read_only(query)  # the same guard as the worker's /v1/sql
    except UnsafeQuery as exc:
        err.print(f"[red]query refused:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    try:
        warehouse = open_warehouse(settings)
        try:
            result = warehouse.query(safe, params)
        finally:
            warehouse.close()
    except WarehouseError as exc:
        err.print(f"[red]query failed:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    return result.columns, result.rows


def print_rows(columns: list[str], rows: list[list[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(dict(zip(columns, row, strict=True))).decode() + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(escape(str(v)) for v in row))  # values are data, not markup
        console.print(table)
