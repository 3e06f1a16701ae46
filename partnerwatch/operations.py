"""Running the pipeline: `config`, `kafka`, `topics`, `worker`, `provider-stage`, `migrate`.

Registered on the main CLI by partnerwatch/main.py. Composition-root code like `partnerwatch/main.py`:
it imports `streams` and `sinks` only inside the commands that need them.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer

from partnerwatch.choices import KafkaAction
from partnerwatch.common import console, err, kafka_runner, line, plain, worker_health
from partnerwatch.common import load_settings as _settings
from partnerwatch.preflight import (
    EXIT_UNAVAILABLE,
    kafka_errors,
    require_broker,
    require_free_port,
    warehouse_label,
)
from pipeline.config import (
    ENV_FILE_VARIABLE,
    Settings,
    detector_markdown_table,
    markdown_table,
    shown_value,
    variables,
)

if TYPE_CHECKING:
    from socket import socket as Socket


def config(
    markdown: Annotated[
        bool,
        typer.Option(
            help="print the table in docs/operations.md (with --detectors: docs/detectors.md)"
        ),
    ] = False,
    detectors: Annotated[
        bool, typer.Option(help="only the detectors' thresholds (PW_DETECT_*)")
    ] = False,
) -> None:
    """Show the configuration in force: every PW_* variable, its value (secrets as ***) and where it
    came from (environment, the PW_ENV_FILE file, or default)."""
    if markdown:
        print(detector_markdown_table() if detectors else markdown_table())
        return
    s = _settings()
    env_file = os.environ.get(ENV_FILE_VARIABLE)
    if env_file and not detectors:
        print(f"{ENV_FILE_VARIABLE} = {env_file!r}  (environment)")
    for var in variables():
        if detectors and var.path[0] != "detect":
            continue
        print(f"{var.env} = {shown_value(s, var)}  ({s.origin(var.env)})")


def kafka(
    action: Annotated[
        KafkaAction, typer.Argument(help="what to do with the local broker", case_sensitive=False)
    ],
) -> None:
    """Run the local single-node Kafka broker on the port of PW_KAFKA_BROKER (jars and data cached in PW_KAFKA_HOME)."""
    raise typer.Exit(kafka_runner(_settings(), str(action)))


def topics() -> None:
    """Create the pipeline topics (idempotent)."""
    from sinks.kafka_io import ensure_topics

    settings = _settings()
    require_broker(settings)
    with kafka_errors(settings):
        created = ensure_topics(settings)
    console.print(f"created: {', '.join(created) or 'none (all exist)'}")


def worker(
    loglevel: Annotated[
        str,
        typer.Option(
            "--loglevel", "-l", help="debug, info, warning or error (default: PW_LOG_LEVEL)"
        ),
    ] = "",
) -> None:
    """Run the stream worker: ingest, sequence, detect, load the warehouse (unless
    PW_WAREHOUSE_LOADER=external: `partnerwatch loader` does), serve the HTTP API."""
    import mode.loop

    from sinks.kafka_io import ensure_topics

    # Faust reads `--loop` from argv when it is first imported, which is before argv is set
    # below: choose uvloop here, before any event loop exists.
    mode.loop.use("uvloop")

    from streams.web.guard import exposure_error

    settings = _settings(
        **({"log_level": loglevel} if loglevel else {})
    )  # logging configured here, once
    if problem := exposure_error(settings):  # checked again when streams.app is imported
        err.print(line("[red]configuration error:[/] ", plain(problem)))
        raise typer.Exit(2)
    from streams.warehouse_service import loader_mode_problem

    if problem := loader_mode_problem(settings):
        err.print(line("[red]configuration error:[/] ", plain(problem)))
        raise typer.Exit(2)
    from detectors import geo

    try:  # the geoip mmdb files, if set, open now: a wrong path stops the worker here, not at the first event
        geo.configure(settings.geoip_city_db, settings.geoip_asn_db)
    except ValueError as exc:
        err.print(line("[red]configuration error:[/] ", plain(exc)))
        raise typer.Exit(2) from None
    require_web_port(settings)
    require_broker(settings)
    with kafka_errors(settings):
        ensure_topics(settings)
    # through the log, not printed: with PW_LOG_FORMAT=json every line the worker writes is JSON
    structlog.get_logger("partnerwatch.worker").info(
        "warehouse", warehouse=warehouse_label(settings)
    )
    from streams.worker import app

    level = {"warning": "warn"}.get(settings.log_level, settings.log_level)  # Faust's own spelling
    sys.argv = [sys.argv[0], "--loop", "uvloop", "worker", "-l", level]
    app.main()


def provider_stage(
    metrics_port: Annotated[
        int, typer.Option(help="serve /metrics on this port of 127.0.0.1 (0: none)")
    ] = 0,
    metrics_fd: Annotated[
        int,
        typer.Option(
            help="serve /metrics on this inherited socket, bound to 127.0.0.1 and listening (set by a worker on PW_PROVIDER_STAGE=process; -1: none)"
        ),
    ] = -1,
    parent_pid: Annotated[
        int,
        typer.Option(
            help="stop when this process is no longer the parent (set by a worker on PW_PROVIDER_STAGE=process)"
        ),
    ] = 0,
) -> None:
    """Run the provider-wide stage on its own: pw.ledger of every account -> the provider-wide
    rules -> pw.alerts (workers then run with PW_PROVIDER_STAGE=off; several of these may run,
    one holds the ledger and the others stand by). Exits 1 when the stage ended on an error."""
    import mode.loop

    from sinks.kafka_io import ensure_topics
    from streams.child_process import parent_gone, unless_parent_gone
    from streams.collector import GC_THRESHOLD
    from streams.provider_stage import ProviderStage
    from streams.trim_thread import TrimThread

    # The stage's thread runs its own event loop (asyncio.run): uvloop, as in a worker, whose
    # policy the stage's thread inherits with PW_PROVIDER_STAGE=worker.
    mode.loop.use("uvloop")
    settings = _settings()  # logging configured here
    listening = _inherited(metrics_fd)
    if listening is not None:  # first: the worker scrapes it from the start
        from streams.child_process import serve_metrics

        serve_metrics(listening)
    elif metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # the topics on a thread of their own: a broker that does not answer is retried for 30 s,
    # and a worker killed meanwhile must not leave this process behind it that long
    created = unless_parent_gone(
        parent_pid, lambda: stopping, "ensure-topics", lambda: ensure_topics(settings)
    )
    if created is None:
        return  # the worker that started this is gone, or it was told to stop
    # The collector as in a worker (the stage is a thread of the worker by default); the heap
    # is frozen once the stage has restored its state (`ProviderStage._take_over`).
    gc.set_threshold(*GC_THRESHOLD)
    stage = ProviderStage(settings)
    # as in a worker (streams/trim_thread.py)
    trim = TrimThread(
        settings.malloc_trim_seconds, mmap_threshold_kib=settings.malloc_mmap_threshold_kib
    )
    if stopping or parent_gone(parent_pid):
        return  # told to stop, or the worker that started this is gone already
    trim.start()  # first: it fixes the mmap threshold before the stage's buffers come and go
    stage.start()
    try:
        while not stopping and stage.alive():
            time.sleep(0.2)
            if parent_gone(parent_pid):  # the worker is gone, SIGKILL included
                structlog.get_logger(__name__).warning(
                    "provider_stage.parent_gone", parent=parent_pid
                )
                break
    finally:
        trim.stop()
    stage.stop()
    if stage.crashed:  # logged as provider_stage.crashed
        raise typer.Exit(1)


def migrate(
    print_ddl: Annotated[
        bool,
        typer.Option(
            "--print-ddl",
            help="print every migration's DDL as it would run (PW_CLICKHOUSE_CLUSTER: cluster DDL); connect to nothing",
        ),
    ] = False,
) -> None:
    """Apply the warehouse migrations (the worker also does this at start)."""
    from sinks.clickhouse import (
        WarehouseError,
        bootstrap_ddl,
        migrate,
        migration_ddl,
        open_warehouse,
    )

    settings = _settings()
    if print_ddl:
        print(";\n\n".join(bootstrap_ddl(settings)) + ";\n")
        for version, name, statements in migration_ddl(settings):
            print(f"-- {version:04d}_{name}\n" + ";\n\n".join(statements) + ";\n")
        return
    try:
        warehouse = open_warehouse(settings)
        applied = migrate(warehouse, settings)
        warehouse.close()
    except WarehouseError as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(1) from None
    # one line whatever the terminal's width (rich would wrap the list at 80 columns in a pipe)
    console.print(f"applied: {', '.join(applied) or 'none (up to date)'}", soft_wrap=True)


def require_web_port(settings: Settings) -> None:
    """A worker needs PW_WEB_PORT free: one line when a worker, or another program, holds it."""
    if worker_health(settings.web_url) is not None:
        err.print(
            line(
                "[red]a worker already runs at[/] ",
                plain(settings.web_url, "red"),
                " (PW_WEB_PORT): use it, stop it, or give this one another PW_WEB_PORT and PW_DATA_DIR",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_UNAVAILABLE)
    require_free_port(
        settings.web_host, settings.web_port, "PW_WEB_PORT", "the worker's web server"
    )


def loader(
    socket: Annotated[
        str,
        typer.Option(
            help="also serve the warehouse to the worker on this Unix socket (its folder 0700; set by a worker on PW_WAREHOUSE_LOADER=process)"
        ),
    ] = "",
    metrics_port: Annotated[
        int,
        typer.Option(
            help="serve /v1/health and /metrics on this port of 127.0.0.1 instead of PW_LOADER_HOST:PW_LOADER_PORT (0: those)"
        ),
    ] = 0,
    metrics_fd: Annotated[
        int,
        typer.Option(
            help="serve /v1/health and /metrics on this inherited socket, bound to 127.0.0.1 and listening (set by a worker on PW_WAREHOUSE_LOADER=process; -1: none)"
        ),
    ] = -1,
    parent_pid: Annotated[
        int,
        typer.Option(
            help="stop when this process is no longer the parent (set by a worker on PW_WAREHOUSE_LOADER=process)"
        ),
    ] = 0,
) -> None:
    """Run the warehouse loader as a process of its own (pw.ledger and pw.alerts -> ClickHouse), with
    GET /v1/health and /metrics on PW_LOADER_HOST:PW_LOADER_PORT. Pair it with workers on
    PW_WAREHOUSE_LOADER=external and a ClickHouse server (PW_CLICKHOUSE_URL); a worker on
    PW_WAREHOUSE_LOADER=process runs it itself, with --socket."""
    import mode.loop

    mode.loop.use("uvloop")  # the process's loop and the loader thread's, as in a worker
    settings = _settings()  # logging configured here
    listening = _inherited(metrics_fd)
    if metrics_port:
        settings = settings.model_copy(
            update={"loader_host": "127.0.0.1", "loader_port": metrics_port}
        )
    from streams.loader_process import run  # it makes the topics once it serves its health

    raise typer.Exit(
        run(
            settings,
            socket=Path(socket) if socket else None,
            parent_pid=parent_pid,
            listening=listening,
        )
    )


def _inherited(fd: int) -> Socket | None:
    """The listening socket of `--metrics-fd` (None for -1); exits 2 with the reason when `fd`
    is no listening TCP socket on 127.0.0.1."""
    if fd < 0:
        return None
    from streams.child_process import inherited_listener

    try:
        return inherited_listener(fd)
    except ValueError as exc:
        err.print(line("[red]cannot serve /metrics:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
