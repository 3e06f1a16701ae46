"""`alerts tail`'s reading and printing: the running worker's live feed (SSE) or pw.alerts from Kafka."""

from __future__ import annotations

import http.client
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson
import typer

from partnerwatch.common import console, err, line, plain
from pipeline.config import Settings
from pipeline.contract import SEVERITIES

SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


class AlertPrinter:
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
            err.print(
                line("[yellow]skipped a record that is not an alert:[/] ", plain(exc)),
                highlight=False,
            )

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
        provider = str(alert.get("provider_id") or "")
        console.print(
            line(
                plain(event_time(alert.get("last_seen")), "dim"),
                " ",
                plain(f"{str(severity).upper():8}", style),
                " ",
                plain(alert["detector"]),
                " account=",
                plain(alert["account_id"]),
                *((" provider=", plain(provider)) if provider else ()),
                f" x{count}\n         ",
                plain(alert.get("title", "")),
                "  ",
                plain(alert_id, "dim"),
            ),
            highlight=False,
        )


def event_time(value: object) -> str:
    """An alert's event time (`2026-11-02T06:05:09.120Z`) as `2026-11-02 06:05:09Z`; `?` if absent."""
    text = str(value or "")
    if len(text) < 19:
        return text or "?"
    return text[:10] + " " + text[11:19] + "Z"


def auth_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}


def tail_sse(settings: Settings, printer: AlertPrinter, from_now: bool) -> None:
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
        headers = auth_headers(settings) | ({"Last-Event-ID": last_id} if last_id else {})
        try:
            response = open_stream(
                f"{settings.web_url}/v1/alerts/stream?{query}", headers, timeout=60
            )
            failures = 0
            for event in events(response):
                if event.id is not None:
                    last_id = event.id
                if event.event == "alert":
                    printer.show_record(event.data)
                elif event.event == "error":
                    err.print(line("[yellow]feed:[/] ", plain(error_of(event.data)), "; resuming"))
        except SseError as exc:
            err.print(line("[red]feed refused:[/] ", plain(exc)))
            raise typer.Exit(1) from None
        except (OSError, http.client.HTTPException) as exc:
            failures += 1
            if failures > 30:
                err.print(line("[red]feed unreachable:[/] ", plain(exc)))
                raise typer.Exit(1) from None
        time.sleep(min(2.0, 0.2 * (failures + 1)))


def error_of(data: str) -> object:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return doc.get("error") if isinstance(doc, dict) else doc


#: Seconds between two looks for Ctrl-C while the alerts topic is quiet.
POLL_SECONDS = 0.2


def tail_kafka(settings: Settings, printer: AlertPrinter, from_now: bool) -> None:
    """Print pw.alerts from Kafka until Ctrl-C. Ctrl-C only asks the loop to stop (it ends within
    `POLL_SECONDS`): raised in the middle of the Kafka client's own work it could leave the
    client unable to close (once seen: the command still running 30 s after Ctrl-C, on a loaded
    machine)."""
    from sinks.kafka_io import consumer as kafka_consumer

    consumer = kafka_consumer(
        settings,
        settings.alerts_topic,
        role="alerts-tail",
        auto_offset_reset="latest" if from_now else "earliest",
    )
    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if main else None
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=int(POLL_SECONDS * 1000)).values():
                for record in records:
                    printer.show_record(record.value)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        consumer.close()
