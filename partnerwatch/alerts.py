"""`partnerwatch alerts ...`: the alert commands, one typer sub-app.

Registered on the main CLI as `cli.add_typer(alerts_cli, name="alerts")`. Like `partnerwatch/main.py`
this is composition-root code: it may import `sinks` inside command bodies.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.common import console, err, http_open, line, plain, worker_running
from partnerwatch.common import load_settings as _settings
from pipeline.config import Settings
from pipeline.contract import SEVERITIES

alerts_cli = typer.Typer(help="Alerts: follow the live feed, acknowledge and resolve.", no_args_is_help=True)

SEVERITY_STYLE = {"info": "dim", "low": "cyan", "medium": "yellow", "high": "bold red", "critical": "bold white on red"}


@alerts_cli.command("tail")
def tail(
    from_now: Annotated[bool, typer.Option(help="only alerts raised from now on")] = False,
    severity: Annotated[str | None, typer.Option(help="minimum severity")] = None,
    account: Annotated[list[str] | None, typer.Option(help="only this account (repeatable)")] = None,
    detector: Annotated[list[str] | None, typer.Option(help="only this detector (repeatable)")] = None,
    source: Annotated[str, typer.Option(help="auto (the worker's feed when it runs, else Kafka) | sse | kafka")] = "auto",
) -> None:
    """Print alerts as they arrive, coloured by severity.

    Reads the running worker's live feed (`GET /v1/alerts/stream`: filtered there, resumed exactly
    after a dropped connection or a worker restart); with no worker it reads pw.alerts from Kafka
    itself. An alert gathering evidence is shown when it opens and again at 2, 4, 8, ... events.
    """
    if severity is not None and severity not in SEVERITIES:
        raise typer.BadParameter(f"one of {', '.join(SEVERITIES)}", param_hint="--severity")
    if source not in ("auto", "sse", "kafka"):
        raise typer.BadParameter("auto, sse or kafka", param_hint="--source")
    settings = _settings()
    printer = _AlertPrinter(severity or "info", set(account or []), set(detector or []))
    try:
        if source == "kafka" or (source == "auto" and not worker_running(settings)):
            _tail_kafka(settings, printer, from_now)
        else:
            _tail_sse(settings, printer, from_now)
    except KeyboardInterrupt:
        pass


class _AlertPrinter:
    """Filters (again: the Kafka path has no server to filter) and prints one line per version shown.

    Every value of an alert is provider-controlled: printed as `plain` text, never as markup or raw
    control characters. A record that is not an alert is reported and skipped, so one bad record
    cannot stop the tail (which would start again from the same record, and stop again).
    """

    def __init__(self, severity: str, accounts: set[str], detectors: set[str]) -> None:
        self.floor = SEVERITIES.index(severity)
        self.accounts = accounts
        self.detectors = detectors
        self.seen: set[str] = set()

    def show_record(self, raw: bytes | str) -> None:
        """One record of the feed: an alert is shown (if it passes the filters), anything else skipped."""
        try:
            alert = orjson.loads(raw)
            if not isinstance(alert, dict):
                raise TypeError("not a JSON object")
            self.show(alert)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            err.print(line("[yellow]skipped a record that is not an alert:[/] ", plain(exc)), highlight=False)

    def show(self, alert: dict[str, Any]) -> None:
        severity = alert.get("severity")
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
        if rank < self.floor or (self.accounts and alert["account_id"] not in self.accounts):
            return
        if self.detectors and alert["detector"] not in self.detectors:
            return
        count = int(alert["count"])
        alert_id = str(alert["alert_id"])
        if alert_id in self.seen and count & (count - 1):
            return  # an update of an alert already shown: show it again at 2, 4, 8, ... events
        self.seen.add(alert_id)
        style = SEVERITY_STYLE.get(str(severity), "")
        when = datetime.now(UTC).strftime("%H:%M:%S")
        console.print(
            line(
                f"[dim]{when}[/] ", plain(f"{str(severity).upper():8}", style), " ", plain(alert["detector"]),
                " account=", plain(alert["account_id"]), " provider=", plain(alert.get("provider_id", "")),
                f" x{count}\n         ", plain(alert.get("title", "")), "  ", plain(alert_id, "dim"),
            ),
            highlight=False,
        )


def _auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}


def _tail_sse(settings: Settings, printer: _AlertPrinter, from_now: bool) -> None:
    """Follow the worker's feed, reconnecting with the last event id (so nothing is missed)."""
    from partnerwatch.sse import SseError, events, open_stream

    query = urllib.parse.urlencode(
        [("severity", SEVERITIES[printer.floor])]
        + [("account", a) for a in sorted(printer.accounts)]
        + [("detector", d) for d in sorted(printer.detectors)]
    )
    last_id = None if from_now else "0"
    failures = 0
    while True:
        headers = _auth(settings) | ({"Last-Event-ID": last_id} if last_id else {})
        try:
            response = open_stream(f"{settings.web_url}/v1/alerts/stream?{query}", headers, timeout=60)
            failures = 0
            for event in events(response):
                if event.id is not None:
                    last_id = event.id
                if event.event == "alert":
                    printer.show_record(event.data)
                elif event.event == "error":
                    err.print(line("[yellow]feed:[/] ", plain(_error_of(event.data)), "; resuming"))
        except SseError as exc:
            err.print(line("[red]feed refused:[/] ", plain(exc)))
            raise typer.Exit(1) from None
        except (OSError, http.client.HTTPException) as exc:
            failures += 1
            if failures > 30:
                err.print(line("[red]feed unreachable:[/] ", plain(exc)))
                raise typer.Exit(1) from None
        time.sleep(min(2.0, 0.2 * (failures + 1)))


def _error_of(data: str) -> object:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return doc.get("error") if isinstance(doc, dict) else doc


def _tail_kafka(settings: Settings, printer: _AlertPrinter, from_now: bool) -> None:
    from sinks.kafka_io import consumer as kafka_consumer

    consumer = kafka_consumer(
        settings, settings.alerts_topic, role="alerts-tail", auto_offset_reset="latest" if from_now else "earliest"
    )
    try:
        for record in consumer:
            printer.show_record(record.value)
    finally:
        consumer.close()


def _lifecycle(action: str, alert_id: str, by: str, note: str) -> None:
    """Through the worker when it runs (it owns the embedded warehouse), else directly."""
    settings = _settings()
    body = orjson.dumps({"by": by, "note": note})
    url = f"{settings.web_url}/v1/alerts/{urllib.parse.quote(alert_id, safe='')}/{action}"
    try:
        with http_open(url, timeout=60, data=body, headers={"Content-Type": "application/json", **_auth(settings)}) as response:
            row = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        err.print(line(f"[red]{action} refused:[/] ", plain(_error_of(exc.read().decode("utf-8", "replace") or "{}") or exc)))
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        row = _lifecycle_direct(settings, action, alert_id, by, note)
    console.print(
        line(plain(row["alert_id"]), " ", plain(row["status"], "bold"), " by ", plain(row["actor"]), " at ", plain(row["at"])),
        highlight=False,
    )


def _lifecycle_direct(settings: Settings, action: str, alert_id: str, by: str, note: str) -> dict[str, Any]:
    from sinks.alert_status import (
        BadRequest,
        StatusConflict,
        UnknownAlert,
        latest_alert,
        record_status,
    )
    from sinks.clickhouse import WarehouseError, migrate, open_warehouse

    try:
        warehouse = open_warehouse(settings)
        try:
            migrate(warehouse, settings)
            row = record_status(warehouse, alert_id, action, by, note).as_dict()
            alert = latest_alert(warehouse, alert_id)
        finally:
            warehouse.close()
    except (BadRequest, UnknownAlert, StatusConflict, WarehouseError) as exc:
        err.print(line(f"[red]{action} refused:[/] ", plain(exc)))
        raise typer.Exit(1) from None
    _tell_outputs(settings, row, alert)
    return row


def _tell_outputs(settings: Settings, row: dict[str, Any], alert: dict[str, Any] | None) -> None:
    """Publish the action for the alert feed's outputs (Alertmanager, OCSF); warn when it cannot."""
    from sinks.alert_delivery.lifecycle import status_record
    from sinks.kafka_io import producer as kafka_producer

    try:
        producer = kafka_producer(settings, role="alert-status", max_block_ms=5000, request_timeout_ms=5000)
        try:
            producer.send(
                settings.alert_status_topic, status_record(row, alert), key=str(row["account_id"]).encode()
            ).get(timeout=10)
        finally:
            producer.close(timeout=5)
    except Exception as exc:  # no broker, no topic: the action is recorded, the outputs are not told
        err.print(line(
            "[yellow]recorded, but the alert feed's outputs were not told[/] ",
            plain(f"({type(exc).__name__} on {settings.kafka_broker}; `partnerwatch topics` creates {settings.alert_status_topic})"),
        ))


_BY = Annotated[str, typer.Option("--by", help="who acts (recorded)")]
_NOTE = Annotated[str, typer.Option("--note", help="why (recorded)")]
_ALERT_ID = Annotated[str, typer.Argument(help="the alert's id")]


@alerts_cli.command("ack")
def ack(alert_id: _ALERT_ID, by: _BY, note: _NOTE = "") -> None:
    """Acknowledge an open alert (someone is on it); recorded in audit.alert_status."""
    _lifecycle("ack", alert_id, by, note)


@alerts_cli.command("resolve")
def resolve(alert_id: _ALERT_ID, by: _BY, note: _NOTE = "") -> None:
    """Resolve an open or acknowledged alert; resolving it again is refused (exit 1, HTTP 409)."""
    _lifecycle("resolve", alert_id, by, note)


@alerts_cli.command("reopen")
def reopen(alert_id: _ALERT_ID, by: _BY, note: _NOTE = "") -> None:
    """Reopen a resolved alert."""
    _lifecycle("reopen", alert_id, by, note)
