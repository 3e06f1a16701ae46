"""What every command module shares: the settings (or a clear error), whether a worker answers,
running a user query, and printing rows. The consoles and how provider-controlled text is printed
live in `partnerwatch.terminal` (re-exported here).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.table import Table

from partnerwatch.preflight import check_embedded_exists, check_migrated, one_line, say_warehouse
from partnerwatch.terminal import console as console
from partnerwatch.terminal import err as err
from partnerwatch.terminal import json_line as json_line
from partnerwatch.terminal import line as line
from partnerwatch.terminal import plain as plain
from pipeline.config import Settings
from pipeline.logs import configure_logging
from pipeline.text import visible
from sinks.user_sql import BUSY_HEADER

#: The local Kafka runner, package data (with its pom.xml and log4j2.properties), so it runs from
#: an installed wheel as from a checkout. Its cache is outside the package (see the script).
KAFKA_SH = Path(str(resources.files("partnerwatch") / "kafka_runner" / "kafka.sh"))
#: The local SQS stand-in's runner (ElasticMQ from Maven Central), shipped like the Kafka runner.
ELASTICMQ_SH = Path(str(resources.files("partnerwatch") / "elasticmq_runner" / "elasticmq.sh"))


def kafka_runner(settings: Settings, action: str, quiet: bool = False) -> int:
    """Run the local Kafka runner (`start`, `stop`, ...); its exit status, or 1 with a clear message.

    The runner gets PW_KAFKA_BROKER as Settings resolved it (environment, PW_ENV_FILE or default)
    and listens on its port, so the broker is where the clients will connect."""
    if not KAFKA_SH.is_file():
        err.print(
            line(
                "[red]the local Kafka runner is missing:[/] ",
                plain(KAFKA_SH),
                " (partnerwatch installed without its package data?)",
            )
        )
        return 1
    env = {**os.environ, "PW_KAFKA_BROKER": settings.kafka_broker}
    # A fixed command (S603, S607): the packaged runner under the system's bash; `action` is one
    # argument (no shell), and the script refuses any but fetch/start/stop/status/reset.
    return subprocess.call(  # noqa: S603
        ["bash", str(KAFKA_SH), action],  # noqa: S607
        env=env,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def http_open(
    url: str, timeout: float, data: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    """`urlopen` for the worker's own HTTP API (a POST when `data` is given): http and https URLs
    only, so an address built from settings can never open a `file:` or other URL."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 (scheme checked above)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked above)


#: How long a client of /v1/sql waits, in all, while the worker answers 429 (busy: its
#: PW_SQL_MAX_CONCURRENT queries running) before it gives up with that answer.
SQL_BUSY_WAIT_SECONDS = 60.0


def post_sql(
    url: str,
    timeout: float,
    data: bytes,
    headers: dict[str, str],
    busy_wait: float = SQL_BUSY_WAIT_SECONDS,
) -> Any:
    """`http_open` of a worker's `/v1/sql`, waiting out its busy answers (429 marked
    `PartnerWatch-Busy: sql`, streams/web/sql.py): each wait as its `Retry-After` says, up to
    `busy_wait` seconds in all; then the last one is raised like any other `HTTPError`. Any
    other 429 (the web guard's throttle of failed authentications), or a busy answer asking for
    no wait or more than `MAX_BUSY_PAUSE` seconds, is raised at once."""
    deadline = time.monotonic() + busy_wait
    while True:
        try:
            return http_open(url, timeout, data=data, headers=headers)
        except urllib.error.HTTPError as exc:
            answer = exc.headers
            if exc.code != 429 or answer is None or answer.get(BUSY_HEADER) != "sql":
                raise
            pause = _retry_after(answer.get("Retry-After"))
            if pause is None or time.monotonic() + pause > deadline:
                raise
            exc.close()
            time.sleep(pause)


#: The longest `Retry-After` `post_sql` waits for (the worker's busy answer asks for 1 s).
MAX_BUSY_PAUSE = 5.0


def _retry_after(value: str | None) -> float | None:
    """A `Retry-After` of 0-`MAX_BUSY_PAUSE` seconds, at least 0.2; None for anything else
    (absent, not a number, longer)."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    if not 0 <= seconds <= MAX_BUSY_PAUSE:  # NaN and infinities too
        return None
    return max(0.2, seconds)


def elasticmq_runner(action: str, endpoint: str = "", quiet: bool = False) -> int:
    """Run the local ElasticMQ runner (`start`, `stop`, `status`); it listens on the port of
    PW_SQS_ENDPOINT_URL (`endpoint`, default http://127.0.0.1:9324)."""
    if not ELASTICMQ_SH.is_file():
        err.print(line("[red]the local ElasticMQ runner is missing:[/] ", plain(ELASTICMQ_SH)))
        return 1
    env = dict(os.environ)
    if endpoint:
        env["PW_SQS_ENDPOINT_URL"] = endpoint
    # A fixed command (S603, S607), as for the Kafka runner: the packaged script, `action` one argument.
    return subprocess.call(  # noqa: S603
        ["bash", str(ELASTICMQ_SH), action],  # noqa: S607
        env=env,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def load_settings(**overrides: Any) -> Settings:
    """`Settings.from_env()`, and logging configured from it (once per command); a bad PW_* value
    exits 2 with one line that names the variable."""
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:
        err.print(line("[red]configuration error:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    configure_logging(settings)
    # kafka-python's "a task ran for 0.4 s" warnings are about its own event loop, not anything a
    # user of a command can act on: they would only break up the command's output.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    return settings


def worker_running(settings: Settings) -> bool:
    """The worker answers on its web port (it, or its loader child, then holds the embedded
    warehouse), healthy or not."""
    return worker_health(settings.web_url) is not None


def worker_health(web_url: str) -> dict[str, Any] | None:
    """The worker's GET /v1/health document (also when it answers 503 "degraded"), None if no answer."""
    try:
        with http_open(f"{web_url}/v1/health", timeout=2) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code != 503:  # 503 "degraded": the worker runs, something in it does not
            return None
        body = exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def parse_params(params: list[str]) -> dict[str, str]:
    out = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes key=value, got {item!r}")
        out[key] = value
    return out


def run_query(
    settings: Settings, query: str, params: dict[str, Any]
) -> tuple[list[str], list[list[Any]]]:
    """Run a user query through the worker when it runs (it owns the embedded engine), else directly.

    Either way the same guard admits it (pipeline/forensics/sql_guard.py, with the engine's own
    parser) and it runs read-only under the PW_SQL_* limits.
    """
    body = orjson.dumps({"query": query, "params": params})
    headers = {"Content-Type": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    try:
        # the worker stops the query after PW_SQL_MAX_EXECUTION_TIME; a client that gives up earlier cancels it
        with post_sql(
            f"{settings.web_url}/v1/sql",
            timeout=settings.sql_max_execution_time + 30,
            data=body,
            headers=headers,
        ) as response:
            doc = orjson.loads(response.read())
            say_warehouse(settings, via_worker=True)
            return doc["columns"], doc["rows"]
    except urllib.error.HTTPError as exc:
        try:
            message = orjson.loads(exc.read()).get("error", str(exc))
        except (orjson.JSONDecodeError, AttributeError):
            message = str(exc)
        err.print(
            line("[red]query failed:[/] ", plain(one_line(Exception(message)))), soft_wrap=True
        )
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # no worker: open the warehouse here
    from pipeline.forensics.sql_guard import UnsafeQuery
    from sinks.clickhouse import SqlLimits, WarehouseError, open_warehouse, run_user_sql

    check_embedded_exists(settings)
    say_warehouse(settings, via_worker=False)
    try:
        warehouse = open_warehouse(settings)
        try:
            check_migrated(warehouse, settings)
            result = run_user_sql(
                warehouse.user_query(params, SqlLimits.from_settings(settings)), query
            )
        finally:
            warehouse.close()
    except UnsafeQuery as exc:
        err.print(line("[red]query refused:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(1) from None
    except WarehouseError as exc:
        err.print(line("[red]query failed:[/] ", plain(one_line(exc))), soft_wrap=True)
        raise typer.Exit(1) from None
    return result.columns, result.rows


def pick_columns(
    columns: list[str], rows: list[list[Any]], wanted: str | None
) -> tuple[list[str], list[list[Any]]]:
    """Only the `--columns a,b,c` of a result, in that order; an unknown name exits 2 naming the known ones."""
    if not wanted:
        return columns, rows
    names = [c.strip() for c in wanted.split(",") if c.strip()]
    unknown = [n for n in names if n not in columns]
    if unknown or not names:
        err.print(
            line(
                "[red]--columns: no column[/] ",
                plain(", ".join(unknown) or "(none given)", "red"),
                "; the result has: ",
                plain(", ".join(columns)),
            ),
            soft_wrap=True,
        )
        raise typer.Exit(2)
    index = [columns.index(n) for n in names]
    return names, [[row[i] for i in index] for row in rows]


def print_rows(
    columns: list[str], rows: list[list[Any]], fmt: str, only: str | None = None
) -> None:
    """Query results as JSON lines, CSV, a table, or vertically (one `column: value` line each, a
    blank line between rows: wide results stay readable at 80 columns); values are data, printed
    as `plain` text. `only`: the `--columns` to keep."""
    columns, rows = pick_columns(columns, rows, only)
    if fmt == "vertical":
        width = max((len(visible(str(c))) for c in columns), default=0)
        for number, row in enumerate(rows, start=1):
            console.print(plain(f"-- row {number}", "dim"), highlight=False)
            for column, value in zip(columns, row, strict=True):
                console.print(
                    line(plain(f"{visible(str(column)):>{width}}", "bold"), ": ", plain(value)),
                    highlight=False,
                    soft_wrap=True,
                )
        if not rows:
            err.print("(no rows)", style="dim")
        return
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json_line(dict(zip(columns, row, strict=True))) + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([visible(str(c)) for c in columns])
        writer.writerows([visible(str(v)) for v in row] for row in rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table()
        for column in columns:
            table.add_column(
                plain(column), overflow="fold"
            )  # a narrow column wraps a value, never cuts it
        for row in rows:
            table.add_row(*(plain(v) for v in row))
        console.print(table)
