"""`partnerwatch alerts feed|redeliver|check-routes`: alert delivery commands.

They join the `alerts` sub-app of partnerwatch/alerts.py. Composition-root code: `sinks` is
imported inside the command bodies only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from partnerwatch.alerts import alerts_cli
from partnerwatch.common import console, err, line, plain
from pipeline.config import Settings

if TYPE_CHECKING:
    from sinks.alert_outputs.routes import AlertRoutes


#: `--routes FILE` of every delivery command: wins over PW_ALERT_ROUTES.
_ROUTES = Annotated[
    Path | None,
    typer.Option(
        "--routes",
        exists=True,
        dir_okay=False,
        help="the routes file, TOML or YAML (default: PW_ALERT_ROUTES)",
    ),
]


def _load(routes_file: Path | None = None) -> tuple[Settings, AlertRoutes]:
    """Settings and the validated routes file (`--routes`, else PW_ALERT_ROUTES); a bad one exits
    2 with the field named."""
    import os

    from partnerwatch.common import load_settings
    from sinks.alert_outputs.routes import RoutesError, load

    # logging configured here
    settings = load_settings(alert_routes=str(routes_file)) if routes_file else load_settings()
    if not settings.alert_routes:
        err.print(
            "[red]configuration error:[/] no routes file: give --routes FILE or set PW_ALERT_ROUTES (see infra/alerts/routes.example.toml)"
        )
        raise typer.Exit(2)
    try:
        routes = load(settings.alert_routes, os.environ)
    except RoutesError as exc:
        err.print(line("[red]configuration error:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    return settings, routes


@alerts_cli.command("feed")
def feed(routes_file: _ROUTES = None) -> None:
    """Deliver alerts from pw.alerts to the outputs of PW_ALERT_ROUTES (runs until stopped).

    Retries with backoff per output, in order per account; after the retry budget an alert is
    parked on <prefix>alerts.parked (Settings.parked_topic; see `alerts redeliver`). Metrics on PW_ALERT_FEED_METRICS_HOST:PW_ALERT_FEED_METRICS_PORT (127.0.0.1:9466).
    """
    from prometheus_client import start_http_server

    from partnerwatch.preflight import require_broker
    from sinks.alert_delivery.feed import run_feed

    settings, routes = _load(routes_file)
    require_broker(settings)
    if settings.alert_feed_metrics_port:
        start_http_server(settings.alert_feed_metrics_port, addr=settings.alert_feed_metrics_host)
    run_feed(settings, routes)


@alerts_cli.command("redeliver")
def redeliver(
    output: Annotated[
        str | None, typer.Option(help="only alerts parked for this output (others stay parked)")
    ] = None,
    routes_file: _ROUTES = None,
) -> None:
    """Send parked alerts again, to the output each was parked for; failures are parked again."""
    from partnerwatch.preflight import kafka_errors, require_broker
    from sinks.alert_delivery.redeliver import redeliver as run

    settings, routes = _load(routes_file)
    require_broker(settings)
    if output is not None and output not in routes.outputs:
        err.print(
            line(
                "[red]unknown output[/] ",
                plain(repr(output)),
                "; the routes file defines: ",
                plain(", ".join(sorted(routes.outputs))),
            )
        )
        raise typer.Exit(2)
    with kafka_errors(settings):
        report = asyncio.run(run(settings, routes, output))
    console.print(
        f"redelivered {report.delivered}, parked again {report.parked_again}, left parked for other outputs {report.passed_over}"
    )
    if report.parked_again:
        raise typer.Exit(1)


@alerts_cli.command("check-routes")
def check_routes(routes_file: _ROUTES = None) -> None:
    """Validate the routes file (types, URLs, secrets in the environment) and print the routes."""
    _settings, routes = _load(routes_file)
    for route in routes.config.routes:
        scope = f"severity >= {route.min_severity}"
        if route.detectors:
            scope += f", detectors {', '.join(route.detectors)}"
        if route.accounts:
            scope += f", accounts {', '.join(route.accounts)}"
        console.print(
            plain(f"{route.name}: {scope} -> {', '.join(route.outputs)} ({route.versions})")
        )
