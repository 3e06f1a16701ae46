"""Forensic commands: `query` (the named query library) and `hunt` (retro-hunt a detector).

Registered on the main CLI by `register(cli)`; composition-root code like `partnerwatch/main.py`, so
it may reach `sinks`/`streams`/`detectors` inside command bodies. Queries go through the same
path as `partnerwatch sql` (`partnerwatch.main.run_query`: the running worker's `/v1/sql`, else the
warehouse directly) and the same read-only guard.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from partnerwatch.choices import Format, ListFormat
from partnerwatch.common import console, err, json_line, line, plain
from pipeline.forensics.queries import NamedQuery, QueryLibraryError


def register(cli: typer.Typer) -> None:
    """Add `query` and `hunt` to the main CLI."""
    cli.command("query")(query)
    cli.command("hunt")(hunt)


def query(
    name: Annotated[
        str | None, typer.Argument(help="a named query of the library (see --list)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value, repeatable")
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="vertical: one `column: value` line each (wide results)",
            case_sensitive=False,
        ),
    ] = Format.table,
    list_: Annotated[
        bool, typer.Option("--list", help="the queries, their descriptions and parameters")
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", "-c", help="only these result columns, comma-separated, in this order"
        ),
    ] = None,
) -> None:
    """Run a named forensic query with typed parameters (server-side, never spliced into SQL)."""
    from partnerwatch.common import load_settings, parse_params, print_rows, run_query
    from pipeline.forensics import queries

    try:
        library = queries.load()
    except QueryLibraryError as exc:
        err.print(line("[red]query library:[/] ", plain(exc)))
        raise typer.Exit(1) from None
    if list_:
        _print_library(list(library.values()), str(fmt))
        return
    if name is None:
        err.print("[red]name a query, or use --list[/]")
        raise typer.Exit(2)
    if name not in library:
        err.print(
            line(
                "[red]no query named ",
                plain(repr(name), "red"),
                f"[red];[/] known: {', '.join(library)}",
            )
        )
        raise typer.Exit(2)
    try:
        params = library[name].bind(parse_params(param or []))
    except QueryLibraryError as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(2) from None
    names, rows = run_query(load_settings(), library[name].sql, params)
    print_rows(names, rows, str(fmt), columns)


def _print_library(library: list[NamedQuery], fmt: str) -> None:
    if fmt == "json":
        for q in library:
            doc = {
                "name": q.name,
                "description": q.description,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "required": p.required,
                        "default": p.default,
                        "description": p.description,
                    }
                    for p in q.params
                ],
            }
            sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return
    for q in library:
        console.print(f"[bold]{q.name}[/]  {escape(q.description)}", highlight=False)
        for p in q.params:
            need = "required" if p.required else f"default {p.default!r}"
            console.print(
                escape(f"    --param {p.name}=<{p.type}>  ({need})  {p.description}"),
                highlight=False,
            )
        console.print()


def hunt(
    detector: Annotated[str, typer.Option(help="detector id, e.g. provider_without_grant")],
    from_: Annotated[
        str, typer.Option("--from", help="start (inclusive): a date or an RFC 3339 time")
    ],
    to: Annotated[str, typer.Option(help="end (exclusive): a date or an RFC 3339 time")],
    account: Annotated[
        str | None, typer.Option(help="one account (default: every account active in the period)")
    ] = None,
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ListFormat.table,
    publish: Annotated[
        bool,
        typer.Option(
            help="store the alerts marked new in audit.alerts (needs the warehouse: stop the worker)"
        ),
    ] = False,
) -> None:
    """Run a detector over stored history and report the alerts it would have raised in [from, to).

    Each account is replayed from its first event (grants, approvals, policy and the detectors'
    windows come from the log), findings outside the period are not reported, and an alert whose
    id audit.alerts already holds is marked `exists`. Report only, unless --publish.
    """
    from detectors.retro_hunt import hunt as run_hunt
    from partnerwatch.common import load_settings, worker_running
    from partnerwatch.known import check_detectors
    from partnerwatch.warehouse_access import SqlFailed, warehouse_access
    from pipeline.forensics.chain_check import parse_when
    from sinks.clickhouse import WarehouseError

    check_detectors([detector])
    try:
        start, end = parse_when(from_), parse_when(to)
    except ValueError:
        raise typer.BadParameter(
            f"--from/--to take a date or an RFC 3339 time, got {from_!r} / {to!r}"
        ) from None
    settings = load_settings()
    if publish and not settings.clickhouse_url and worker_running(settings):
        err.print(
            "[red]--publish needs the embedded warehouse, which the running worker owns: stop it first[/]"
        )
        raise typer.Exit(1)
    try:
        with warehouse_access(settings) as source:
            if account:
                from partnerwatch.known import check_accounts

                check_accounts(lambda sql, params: source.query(sql, params).rows, [account])
            from partnerwatch.progress import phases

            with phases(f"replaying stored history through {detector}"):
                report = run_hunt(source, detector, start, end, account, config=settings.detect)
            stored = 0
            if publish and report.new:
                from sinks.audit_store import store_alerts

                stored = store_alerts(source, report.new)
    except ValueError as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(2) from None
    except (WarehouseError, SqlFailed) as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(1) from None
    if fmt == "json":
        for f in report.findings:
            sys.stdout.write(json_line({"status": f.status, **f.alert}) + "\n")
    else:
        _print_hunt(report.findings)
    new = len(report.new)
    err.print(
        line(
            plain(detector),
            f": {len(report.findings)} alert(s) in the period, {new} new, "
            f"{len(report.findings) - new} already stored; {report.events_replayed} events replayed on "
            f"{len(report.accounts)} account(s)"
            + (f"; stored {stored} new alert(s)" if publish else ""),
        )
    )


def _print_hunt(findings: Any) -> None:
    table = Table(
        "status",
        "alert_id",
        "severity",
        "account",
        "provider",
        "principal",
        "first_seen",
        "last_seen",
        "count",
        "title",
    )
    for f in findings:
        a = f.alert
        cells = (
            f.status,
            a["alert_id"],
            a["severity"],
            a["account_id"],
            a["provider_id"],
            a["principal_id"],
            a["first_seen"],
            a["last_seen"],
            str(a["count"]),
            a["title"],
        )
        table.add_row(*(plain(c) for c in cells))
    console.print(table)
