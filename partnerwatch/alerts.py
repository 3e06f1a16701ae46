"""`partnerwatch alerts ...`: the alert commands, one typer sub-app.

Registered on the main CLI as `cli.add_typer(alerts_cli, name="alerts")`. Like `partnerwatch/main.py`
this is composition-root code: it may import `sinks` inside command bodies.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.alert_tail import (
    SEVERITY_STYLE,
    AlertPrinter,
    auth_headers,
    error_of,
    tail_kafka,
    tail_sse,
)
from partnerwatch.choices import AlertStatus, ListFormat, Severity, TailSource
from partnerwatch.common import console, err, http_open, line, plain, worker_running
from partnerwatch.common import load_settings as _settings
from pipeline.config import Settings
from pipeline.contract import SEVERITIES

alerts_cli = typer.Typer(
    help="Alerts: follow the live feed, acknowledge and resolve.", no_args_is_help=True
)


@alerts_cli.command("tail")
def tail(
    from_now: Annotated[bool, typer.Option(help="only alerts raised from now on")] = False,
    severity: Annotated[
        Severity | None, typer.Option(help="minimum severity", case_sensitive=False)
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option(help="only this account (repeatable; it must have stored events)"),
    ] = None,
    detector: Annotated[
        list[str] | None,
        typer.Option(
            help="only this detector (repeatable; an unknown id is refused with the list of known ones)"
        ),
    ] = None,
    source: Annotated[
        TailSource,
        typer.Option(help="auto: the worker's feed when it runs, else Kafka", case_sensitive=False),
    ] = TailSource.auto,
) -> None:
    """Print alerts as they arrive, coloured by severity.

    Reads the running worker's live feed (`GET /v1/alerts/stream`: filtered there, resumed exactly after a dropped connection or a worker restart); with no worker it reads pw.alerts from Kafka itself. Each line starts with the event time of the alert's latest evidence (UTC). An alert gathering evidence is shown when it opens and again at 2, 4, 8, ... events.
    """
    from partnerwatch.known import check_accounts, check_detectors, quiet_query
    from partnerwatch.preflight import kafka_errors, require_broker

    check_detectors(detector or [])
    settings = _settings()
    if account:
        check_accounts(lambda sql, params: quiet_query(settings, sql, params), account)
    printer = AlertPrinter(str(severity or "info"), set(account or []), set(detector or []))
    try:
        if source == TailSource.kafka or (
            source == TailSource.auto and not worker_running(settings)
        ):
            require_broker(settings)
            with kafka_errors(settings):
                tail_kafka(settings, printer, from_now)
        else:
            tail_sse(settings, printer, from_now)
    except KeyboardInterrupt:
        pass


def _lifecycle(action: str, alert_id: str, by: str, note: str) -> None:
    """Through the worker when it runs (it owns the embedded warehouse), else directly."""
    settings = _settings()
    body = orjson.dumps({"by": by, "note": note})
    url = f"{settings.web_url}/v1/alerts/{urllib.parse.quote(alert_id, safe='')}/{action}"
    try:
        with http_open(
            url,
            timeout=60,
            data=body,
            headers={"Content-Type": "application/json", **auth_headers(settings)},
        ) as response:
            row = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        err.print(
            line(
                f"[red]{action} refused:[/] ",
                plain(error_of(exc.read().decode("utf-8", "replace") or "{}") or exc),
            )
        )
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        row = _lifecycle_direct(settings, action, alert_id, by, note)
    console.print(
        line(
            plain(row["alert_id"]),
            " ",
            plain(row["status"], "bold"),
            " by ",
            plain(row["actor"]),
            " at ",
            plain(row["at"]),
        ),
        highlight=False,
    )


def _lifecycle_direct(
    settings: Settings, action: str, alert_id: str, by: str, note: str
) -> dict[str, Any]:
    from partnerwatch.preflight import (
        check_embedded_exists,
        check_migrated,
        one_line,
        say_warehouse,
    )
    from sinks.alert_status import (
        BadRequest,
        StatusConflict,
        UnknownAlert,
        latest_alert,
        record_status,
    )
    from sinks.clickhouse import WarehouseError, open_warehouse

    # Only `partnerwatch migrate` and the worker create or migrate a warehouse (partnerwatch/preflight.py).
    check_embedded_exists(settings)
    say_warehouse(settings, via_worker=False)
    try:
        warehouse = open_warehouse(settings)
        try:
            check_migrated(warehouse, settings)
            row = record_status(warehouse, alert_id, action, by, note).as_dict()
            alert = latest_alert(warehouse, alert_id)
        finally:
            warehouse.close()
    except (BadRequest, UnknownAlert, StatusConflict, WarehouseError) as exc:
        err.print(line(f"[red]{action} refused:[/] ", plain(one_line(exc))), soft_wrap=True)
        raise typer.Exit(1) from None
    _tell_outputs(settings, row, alert)
    return row


def _tell_outputs(settings: Settings, row: dict[str, Any], alert: dict[str, Any] | None) -> None:
    """Publish the action for the alert feed's outputs (Alertmanager, OCSF); warn when it cannot."""
    from sinks.alert_delivery.lifecycle import status_record
    from sinks.kafka_io import producer as kafka_producer

    try:
        producer = kafka_producer(
            settings, role="alert-status", max_block_ms=5000, request_timeout_ms=5000
        )
        try:
            producer.send(
                settings.alert_status_topic,
                status_record(row, alert),
                key=str(row["account_id"]).encode(),
            ).get(timeout=10)
        finally:
            producer.close(timeout=5)
    except (
        Exception
    ) as exc:  # no broker, no topic: the action is recorded, the outputs are not told
        err.print(
            line(
                "[yellow]recorded, but the alert feed's outputs were not told[/] ",
                plain(
                    f"({type(exc).__name__} on {settings.kafka_broker}; `partnerwatch topics` creates {settings.alert_status_topic})"
                ),
            )
        )


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


# -- alerts list | show ---------------------------------------------------------------------------

#: The latest version of every alert (ReplacingMergeTree by count) with its current status (the
#: latest audit.alert_status row; none, or `reopened`, is open).
_CURRENT = """
SELECT a.alert_id AS alert_id, a.severity AS severity, a.detector AS detector, a.account_id AS account_id,
       a.provider_id AS provider_id, a.principal_id AS principal_id, a.title AS title,
       toString(a.first_seen) AS first_seen, toString(a.last_seen) AS last_seen, a.count AS count,
       if(s.status IN ('', 'reopened'), 'open', s.status) AS status, s.actor AS status_by
FROM audit.alerts AS a FINAL
LEFT JOIN (
    SELECT alert_id, argMax(status, at) AS status, argMax(actor, at) AS actor
    FROM audit.alert_status GROUP BY alert_id
) AS s ON s.alert_id = a.alert_id
"""


@alerts_cli.command("list")
def list_alerts(
    status: Annotated[
        AlertStatus | None,
        typer.Option(
            help="only alerts in this status (reopened ones are open)", case_sensitive=False
        ),
    ] = None,
    severity: Annotated[
        Severity | None, typer.Option(help="minimum severity", case_sensitive=False)
    ] = None,
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    detector: Annotated[str | None, typer.Option(help="one detector")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="at most this many, newest evidence first")
    ] = 50,
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ListFormat.table,
) -> None:
    """Stored alerts with their current status, newest evidence first (`alerts show ID` for one)."""
    from partnerwatch.common import print_rows, run_query
    from partnerwatch.known import check_accounts, check_detectors

    check_detectors([detector] if detector else [])
    settings = _settings()
    if account:
        check_accounts(lambda sql, params: run_query(settings, sql, params)[1], [account])
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if status:
        where.append("status = {status:String}")
        params["status"] = str(status)
    if severity:
        where.append("severity IN {severities:Array(String)}")
        params["severities"] = list(SEVERITIES[SEVERITIES.index(str(severity)) :])
    if account:
        where.append("account_id = {account:String}")
        params["account"] = account
    if detector:
        where.append("detector = {detector:String}")
        params["detector"] = detector
    # Built from constant clauses only (S608); every value is a {name:Type} parameter.
    query = (
        f"SELECT alert_id, severity, detector, account_id, provider_id, title, last_seen, count, status FROM ({_CURRENT})"  # noqa: S608
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY last_seen DESC, alert_id LIMIT {limit:UInt32}"
    )
    columns, rows = run_query(settings, query, params)
    print_rows(columns, rows, str(fmt))
    if fmt == ListFormat.table:
        err.print(
            f"{len(rows)} alert(s)"
            + (f" (the newest {limit}: --limit for more)" if len(rows) == limit else ""),
            style="dim",
        )


@alerts_cli.command("show")
def show_alert(
    alert_id: Annotated[
        str, typer.Argument(help="the alert's id (from `alerts list` or `alerts tail`)")
    ],
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ListFormat.table,
) -> None:
    """One alert: what happened, its evidence events, the response advised, and who acted on it."""
    from partnerwatch.common import json_line, run_query

    settings = _settings()
    columns, rows = run_query(
        settings,
        "SELECT alert_id, severity, detector, account_id, provider_id, principal_id, title, summary,"
        " toString(first_seen) AS first_seen, toString(last_seen) AS last_seen, count, evidence_event_ids, response"
        " FROM audit.alerts FINAL WHERE alert_id = {id:String}",
        {"id": alert_id},
    )
    if not rows:
        err.print(
            line(
                "[red]no alert[/] ",
                plain(repr(alert_id), "red"),
                " in the warehouse (`partnerwatch alerts list` shows the stored ones)",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(1)
    alert = dict(zip(columns, rows[0], strict=True))
    _, history = run_query(
        settings,
        "SELECT status, actor, note, toString(at) FROM audit.alert_status WHERE alert_id = {id:String} ORDER BY at",
        {"id": alert_id},
    )
    current = history[-1][0] if history else "open"
    alert["status"] = "open" if current == "reopened" else current
    alert["history"] = [{"status": h[0], "by": h[1], "note": h[2], "at": h[3]} for h in history]
    if fmt == ListFormat.json:
        import sys

        sys.stdout.write(json_line(alert) + "\n")
        return
    style = SEVERITY_STYLE.get(str(alert["severity"]), "")
    console.print(
        line(
            plain(str(alert["severity"]).upper(), style),
            " ",
            plain(alert["detector"], "bold"),
            "  ",
            plain(alert["alert_id"], "dim"),
        ),
        highlight=False,
    )
    console.print(plain(alert["title"], "bold"), highlight=False)
    console.print(plain(alert["summary"]), highlight=False)
    fields = [
        ("account", alert["account_id"]),
        ("provider", alert["provider_id"] or "-"),
        ("principal", alert["principal_id"] or "-"),
        ("first seen", alert["first_seen"] + " UTC"),
        ("last seen", alert["last_seen"] + " UTC"),
        ("events", alert["count"]),
        ("status", alert["status"]),
    ]
    for name, value in fields:
        console.print(line(plain(f"{name:>10}", "dim"), ": ", plain(value)), highlight=False)
    console.print(plain("evidence (event ids):", "dim"))
    for event_id in alert["evidence_event_ids"]:
        console.print(line("  ", plain(event_id)), highlight=False)
    if alert["response"]:
        console.print(plain("advised response:", "dim"))
        for step in alert["response"]:
            console.print(line("  - ", plain(step)), highlight=False)
    for h in alert["history"]:
        console.print(
            line(
                plain(h["at"] + " UTC", "dim"),
                " ",
                plain(h["status"], "bold"),
                " by ",
                plain(h["by"]),
                *((" - ", plain(h["note"])) if h["note"] else ()),
            ),
            highlight=False,
        )
