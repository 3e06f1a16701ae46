"""Fail early, in one line: is the broker there, is a port free, is the warehouse migrated.

Every command that needs a service checks for it before it starts work, and says what to start
when it is missing, instead of waiting for a client library's timeout and its traceback. Exit
codes, the same for every command:

- 0: done;
- 1: the command ran and failed, or found a problem (a chain break, a refused query, an unknown id);
- 2: a bad option or value (the command did not start);
- 3: something it needs is not there (no broker, a busy port, no warehouse or one not migrated).

A warehouse is only created or migrated by `partnerwatch migrate` and by the worker (at start);
every other command refuses one that is missing or behind, and says to run `partnerwatch migrate`.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.text import Text

from partnerwatch.terminal import err, line, plain
from pipeline.config import Settings, redact_url

#: Something a command needs is not there (see the module docstring).
EXIT_UNAVAILABLE = 3
#: Seconds to wait for a TCP answer from a broker before saying it is not there.
CONNECT_TIMEOUT = 2.0


def fail(*parts: str | Text, code: int = 1) -> typer.Exit:
    """Print one red line (our markup strings, `plain` texts) and return the Exit to raise."""
    err.print(line(*parts), soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _addresses(brokers: str) -> list[tuple[str, int]]:
    out = []
    for item in brokers.split(","):
        host, sep, port = item.strip().rpartition(":")
        out.append((host, int(port)) if sep else (item.strip(), 9092))
    return out


def answers(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_broker(settings: Settings) -> None:
    """Exit 3 with one line when no broker of PW_KAFKA_BROKER accepts a connection (within seconds)."""
    if any(answers(host, port) for host, port in _addresses(settings.kafka_broker)):
        return
    raise fail(
        "[red]no Kafka broker answers at[/] ",
        plain(settings.kafka_broker, "red"),
        "[red] (PW_KAFKA_BROKER):[/] start the local one with `partnerwatch kafka start`, or point PW_KAFKA_BROKER at yours",
        code=EXIT_UNAVAILABLE,
    )


@contextmanager
def kafka_errors(settings: Settings) -> Iterator[None]:
    """A Kafka client error inside the block (the broker went away, a timeout) as one line, exit 3."""
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as exc:
        raise fail(
            "[red]Kafka at[/] ",
            plain(settings.kafka_broker, "red"),
            "[red] failed:[/] ",
            plain(one_line(exc)),
            " (is the broker running? `partnerwatch kafka status`)",
            code=EXIT_UNAVAILABLE,
        ) from None


def require_free_port(host: str, port: int, variable: str, what: str) -> None:
    """Exit 3 with one line when something already listens on host:port."""
    if not answers(host, port, timeout=1.0):
        return
    raise fail(
        f"[red]port {port} on[/] ",
        plain(host, "red"),
        f"[red] ({variable}) is in use by another program:[/] "
        f"stop it, or choose a free port for {what} with {variable}",
        code=EXIT_UNAVAILABLE,
    )


def one_line(exc: BaseException) -> str:
    """An exception's message as one line: a ClickHouse `Code: N. DB::Exception: ...` loses its
    prefix, its stack trace and everything after the first line."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0] if text else text
    for marker in ("DB::Exception: ", "DB::Exception:"):
        if marker in first:
            before, first = first.split(marker, 1)
            # keep what we put before the engine's text (e.g. the PW_SQL_* setting that stopped
            # the query), not the engine's own "Code: N." prefix
            before = re.sub(r"Code: \d+\.\s*$", "", before).strip()
            first = f"{before} {first}" if before else first
            break
    first = first.split(". Stack trace", 1)[0]
    return first.strip()


def warehouse_label(settings: Settings) -> str:
    """Which warehouse the settings name, for humans."""
    if settings.clickhouse_url:
        return f"ClickHouse server {redact_url(settings.clickhouse_url)}"
    return f"embedded chDB at {settings.warehouse_path}"


_told: set[str] = set()


def say_warehouse(settings: Settings, via_worker: bool) -> None:
    """Tell (once per command, on stderr) which warehouse the command reads."""
    label = warehouse_label(settings)
    text = f"warehouse: {label}" + (
        f", through the worker at {settings.web_url}" if via_worker else ""
    )
    if text in _told:
        return
    _told.add(text)
    err.print(plain(text, "dim"), soft_wrap=True, highlight=False)


class NotMigrated(RuntimeError):
    """The warehouse is missing, or behind the code's migrations."""


def _migrate_hint(settings: Settings) -> str:
    where = "" if settings.clickhouse_url else f" (PW_DATA_DIR={settings.data_dir})"
    return f"{where}: run `partnerwatch migrate` (the worker also migrates at start)"


def check_embedded_exists(settings: Settings) -> None:
    """Exit 3 before opening (which would create an empty folder) when no embedded warehouse is there."""
    if settings.clickhouse_url or settings.warehouse_path.is_dir():
        return
    raise fail(
        "[red]no warehouse at[/] ",
        plain(settings.warehouse_path, "red"),
        plain(_migrate_hint(settings)),
        code=EXIT_UNAVAILABLE,
    )


def check_migrated(warehouse: Any, settings: Settings) -> None:
    """Exit 3 with one line when the warehouse has no `audit` database or misses migrations."""
    from sinks.clickhouse import WarehouseError, migrations

    latest = max(version for version, _, _ in migrations())
    try:
        databases = warehouse.query(
            "SELECT count() FROM system.databases WHERE name = 'audit'"
        ).rows
        done = 0
        if databases and int(databases[0][0]):
            tables = warehouse.query(
                "SELECT count() FROM system.tables WHERE database = 'audit' AND name = 'schema_migrations'"
            ).rows
            if tables and int(tables[0][0]):
                rows = warehouse.query("SELECT max(version) FROM audit.schema_migrations").rows
                done = int(rows[0][0] or 0) if rows else 0
    except WarehouseError as exc:
        raise fail(
            "[red]warehouse failed:[/] ", plain(one_line(exc)), code=EXIT_UNAVAILABLE
        ) from None
    if done >= latest:
        return
    state = (
        "is empty (never migrated)"
        if done == 0
        else f"is at migration {done}, this version needs {latest}"
    )
    raise fail(
        "[red]the warehouse[/] ",
        plain(warehouse_label(settings), "red"),
        f"[red] {state}[/]",
        plain(_migrate_hint(settings)),
        code=EXIT_UNAVAILABLE,
    )
