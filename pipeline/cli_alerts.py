"""`partnerwatch alerts ...`: the alert commands, one typer sub-app.

Registered on the main CLI as `cli.add_typer(alerts_cli, name="alerts")`. Like `pipeline/cli.py`
this is composition-root code: it may import `sinks` inside command bodies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from rich.console import Console

from pipeline.config import Settings

alerts_cli = typer.Typer(help="Alerts: follow the live feed, acknowledge and resolve.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

SEVERITY_STYLE = {"info": "dim", "low": "cyan", "medium": "yellow", "high": "bold red", "critical": "bold white on red"}


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


@alerts_cli.command("tail")
def tail(
    from_now: Annotated[bool, typer.Option(help="only alerts raised from now on")] = False,
    severity: Annotated[str | None, typer.Option(help="minimum severity")] = None,
) -> None:
    """Print alerts from pw.alerts as they arrive, coloured by severity.

    An alert gathering evidence is shown when it opens and again at 2, 4, 8, ... events.
    """
    from kafka import KafkaConsumer

    from pipeline.contract import SEVERITIES

    settings = _settings()
    floor = SEVERITIES.index(severity) if severity in SEVERITIES else 0
    consumer = KafkaConsumer(
        settings.alerts_topic,
        bootstrap_servers=settings.kafka_broker,
        auto_offset_reset="latest" if from_now else "earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    seen: set[str] = set()
    try:
        for record in consumer:
            alert = orjson.loads(record.value)
            if SEVERITIES.index(alert["severity"]) < floor:
                continue
            count = int(alert["count"])
            if alert["alert_id"] in seen and count & (count - 1):
                continue  # an update of an alert already shown: show it again at 2, 4, 8, ... events
            seen.add(alert["alert_id"])
            style = SEVERITY_STYLE.get(alert["severity"], "")
            when = datetime.now(UTC).strftime("%H:%M:%S")
            console.print(
                f"[dim]{when}[/] [{style}]{alert['severity'].upper():8}[/] {alert['detector']} "
                f"account={alert['account_id']} provider={alert['provider_id']} x{alert['count']}\n"
                f"         {alert['title']}"
            )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
