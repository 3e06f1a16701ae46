"""`partnerwatch grants add|list|revoke|import`: declare who may do what on a seller account.

Each command emits the events a seller's own tooling would: `permission.grant` (a grant given or
replaced, same `grant_id`) and `permission.revoke` (names only `grant_id`), with the seller as the
actor, checked by the worker's own validator before anything is sent. The worker sequences them
into the account's ledger like any event, and the detectors fold them into the account's
authorization state (pipeline/authorization.py). `grants list` folds the same events, read back
from the warehouse, with the same code: what it shows is the state the detectors decide with.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from partnerwatch.choices import ListFormat
from partnerwatch.common import console, err, json_line, line, plain
from partnerwatch.common import load_settings as _settings
from partnerwatch.grant_events import (
    DEFAULT_BY,
    GrantError,
    grant_event,
    now_text,
    read_import,
    revoke_event,
)
from pipeline.config import Settings

grants_cli = typer.Typer(
    help="Grants: who may do what on a seller account (permission.grant / permission.revoke events).",
    no_args_is_help=True,
)


def _send(settings: Settings, events: list[dict[str, Any]], wait: bool, timeout: float) -> None:
    """Produce the events; with `wait`, until the worker accepted and stored each one."""
    from partnerwatch.ingest_cli import Line, Verdicts, produce
    from partnerwatch.known import quiet_query
    from partnerwatch.preflight import EXIT_UNAVAILABLE, kafka_errors, require_broker
    from sinks.kafka_io import ensure_topics

    require_broker(settings)
    lines = [
        Line(n, orjson.dumps(e), e["event_id"], e["account_id"], None)
        for n, e in enumerate(events, start=1)
    ]
    with kafka_errors(settings):
        ensure_topics(settings)
        verdicts = Verdicts(settings) if wait else None
        try:
            sent = produce(settings, lines)
            if verdicts is not None:
                verdicts.wait(sent, timeout)
        finally:
            if verdicts is not None:
                verdicts.close()
    if not wait:
        err.print(
            f"sent {len(sent)} event(s) to {settings.actions_topic}; `grants list` shows them once the worker has stored them"
        )
        return
    refused = [s for s in sent if s.verdict == "dead-lettered"]
    pending = [s for s in sent if s.verdict == "pending"]
    for s in refused:
        err.print(
            line(
                "[red]refused by the worker:[/] ",
                plain(s.line.event_id or ""),
                " ",
                plain(s.detail),
            ),
            soft_wrap=True,
        )
    if pending:
        err.print(
            f"[red]no verdict within {timeout:g} s for {len(pending)} event(s):[/] is the worker running (`partnerwatch worker`)?"
        )
        raise typer.Exit(EXIT_UNAVAILABLE)
    if refused:
        raise typer.Exit(1)
    # Accepted: wait until the warehouse has them too, so `grants list` right after shows them.
    ids = [s.line.event_id for s in sent if s.verdict == "accepted"]
    deadline = time.monotonic() + timeout
    while ids and time.monotonic() < deadline:
        rows = quiet_query(
            settings,
            "SELECT count() FROM audit.events WHERE event_id IN {ids:Array(String)}",
            {"ids": ids},
        )
        if rows is not None and int(rows[0][0]) >= len(ids):
            break
        time.sleep(0.3)


_BY = Annotated[str, typer.Option("--by", help="the seller principal recorded as the actor")]
_WAIT = Annotated[
    bool, typer.Option(help="wait until the worker has accepted and stored the events")
]
_TIMEOUT = Annotated[float, typer.Option(min=1, help="seconds to wait (--wait)")]


@grants_cli.command("add")
def add(
    account: Annotated[str, typer.Option(help="the seller account")],
    provider: Annotated[str, typer.Option(help="the provider (agency) the grant is given to")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="an action pattern it may perform: listing.*, inventory.update, * (repeatable)"
        ),
    ],
    principal: Annotated[
        list[str] | None,
        typer.Option(help="a user or API client of the provider it covers (repeatable; none: all)"),
    ] = None,
    marketplace: Annotated[
        list[str] | None,
        typer.Option(help="a site (DE, UK, US, ...) or marketplace id (repeatable; none: all)"),
    ] = None,
    ip: Annotated[
        list[str] | None,
        typer.Option(help="a CIDR the provider works from (repeatable; none: anywhere)"),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="expiry: a date (UTC midnight) or an RFC 3339 time")
    ] = None,
    max_price_change_pct: Annotated[
        float | None, typer.Option(help="larger price moves need an approval")
    ] = None,
    require_approval: Annotated[
        list[str] | None, typer.Option(help="an action pattern that needs an approval (repeatable)")
    ] = None,
    grant_id: Annotated[
        str | None, typer.Option(help="replace this grant (default: a new id)")
    ] = None,
    by: _BY = DEFAULT_BY,
    wait: _WAIT = True,
    timeout: _TIMEOUT = 60.0,
) -> None:
    """Give a provider a grant on an account (a permission.grant event)."""
    settings = _settings()
    row = {
        "account": account,
        "provider": provider,
        "scopes": scope,
        "principals": principal,
        "marketplaces": marketplace,
        "ip_allowlist": ip,
        "expires": expires,
        "max_price_change_pct": max_price_change_pct,
        "require_approval": require_approval,
        "grant_id": grant_id,
    }
    try:
        event = grant_event(row, by)
    except GrantError as exc:
        err.print(line("[red]grant refused:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    _send(settings, [event], wait, timeout)
    console.print(
        line(
            "granted ",
            plain(event["grant"]["grant_id"], "bold"),
            " on ",
            plain(account),
            " to ",
            plain(provider),
        ),
        highlight=False,
    )


@grants_cli.command("revoke")
def revoke(
    grant_id: Annotated[str, typer.Argument(help="the grant's id (from `grants list`)")],
    account: Annotated[str, typer.Option(help="the seller account")],
    by: _BY = DEFAULT_BY,
    wait: _WAIT = True,
    timeout: _TIMEOUT = 60.0,
) -> None:
    """Revoke a grant (a permission.revoke event); a grant that is not live on the account is refused."""
    from partnerwatch.known import quiet_query

    settings = _settings()
    rows = quiet_query(
        settings,
        _EVENTS + " AND account_id = {account:String} ORDER BY account_id, seq",
        {"account": account},
    )
    if rows is not None:
        state = fold(rows).get(account, {})
        grant = state.get(grant_id)
        if grant is None or "revoked_at" in grant:
            live = sorted(g for g, v in state.items() if "revoked_at" not in v)
            err.print(
                line(
                    "[red]no live grant[/] ",
                    plain(repr(grant_id), "red"),
                    " on account ",
                    plain(account),
                    "; live grants there: ",
                    plain(", ".join(live) or "none"),
                ),
                soft_wrap=True,
            )
            raise typer.Exit(1)
    try:
        event = revoke_event(account, grant_id, by)
    except GrantError as exc:
        err.print(line("[red]revoke refused:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    _send(settings, [event], wait, timeout)
    console.print(
        line("revoked ", plain(grant_id, "bold"), " on ", plain(account)), highlight=False
    )


@grants_cli.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="CSV (header: account,provider,principals,scopes,marketplaces,ip_allowlist,expires,...) or YAML",
        ),
    ],
    by: _BY = DEFAULT_BY,
    wait: _WAIT = True,
    timeout: _TIMEOUT = 60.0,
) -> None:
    """Give every grant of a CSV or YAML file; a file with any bad row sends nothing.

    Columns: account, provider, principals, scopes, marketplaces, ip_allowlist, expires, and
    optionally grant_id (replace that grant), max_price_change_pct, require_approval, skus. In CSV a
    cell lists several values separated by spaces, `;` or `|`.
    """
    settings = _settings()
    try:
        rows = read_import(file)
    except GrantError as exc:
        err.print(line("[red]", plain(file.name, "red"), "[red]:[/] ", plain(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    events, problems = [], []
    for number, row in enumerate(rows, start=1):
        try:
            events.append(grant_event(row, by))
        except GrantError as exc:
            problems.append((number, exc))
    for number, problem in problems:
        err.print(
            line(plain(f"{file.name}: grant {number}: ", "red"), plain(problem)), soft_wrap=True
        )
    if problems or not events:
        err.print(
            "[red]nothing sent[/]" + ("" if events or problems else ": the file has no grants")
        )
        raise typer.Exit(2)
    _send(settings, events, wait, timeout)
    console.print(
        f"granted {len(events)}: " + ", ".join(e["grant"]["grant_id"] for e in events),
        highlight=False,
    )


_EVENTS = (
    "SELECT account_id, payload FROM audit.events"
    " WHERE action IN ('permission.grant', 'permission.revoke')"
)


def fold(rows: list[list[Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """account -> grant_id -> grant, folded from stored events in `seq` order with the detectors'
    own code (a provider's own grant events are not authority: `authorization.apply` ignores them)."""
    from pipeline.authorization import apply, empty

    states: dict[str, dict[str, Any]] = {}
    for account, payload in rows:
        apply(states.setdefault(str(account), empty()), orjson.loads(payload))
    return {account: state["grants"] for account, state in states.items()}


def state_of(grant: dict[str, Any], now: str) -> str:
    if "revoked_at" in grant:
        return "revoked"
    until = grant.get("valid_until")
    return "expired" if until is not None and now >= until else "live"


@grants_cli.command("list")
def list_(
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    provider: Annotated[str | None, typer.Option(help="one provider")] = None,
    all_: Annotated[bool, typer.Option("--all", help="revoked and expired grants too")] = False,
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", case_sensitive=False)
    ] = ListFormat.table,
) -> None:
    """The grants in force, folded from the account's ledger (stored events), as the detectors see them."""
    from rich.table import Table

    from partnerwatch.common import run_query
    from partnerwatch.known import check_accounts

    settings = _settings()
    if account:
        check_accounts(lambda sql, params: run_query(settings, sql, params)[1], [account])
    sql = (
        _EVENTS
        + (" AND account_id = {account:String}" if account else "")
        + " ORDER BY account_id, seq"
    )
    _, rows = run_query(settings, sql, {"account": account} if account else {})
    now = now_text()
    shown = []
    for acct, grants in sorted(fold(rows).items()):
        for grant_id, grant in sorted(grants.items()):
            status = state_of(grant, now)
            if (provider and grant.get("provider_id") != provider) or (
                status != "live" and not all_
            ):
                continue
            shown.append({"account_id": acct, "status": status, **grant, "grant_id": grant_id})
    if fmt == ListFormat.json:
        for g in shown:
            sys.stdout.write(json_line(g) + "\n")
        return
    table = Table(
        "account",
        "grant",
        "provider",
        "principals",
        "scopes",
        "marketplaces",
        "ip allowlist",
        "expires",
        "status",
    )
    join = lambda v: " ".join(v) if v else "any"  # noqa: E731
    for g in shown:
        table.add_row(
            *(
                plain(c)
                for c in (
                    g["account_id"],
                    g["grant_id"],
                    g.get("provider_id", ""),
                    join(g.get("principals")),
                    " ".join(g.get("scopes", [])),
                    join(g.get("marketplaces")),
                    join(g.get("ip_allowlist")),
                    g.get("valid_until") or "never",
                    g["status"],
                )
            )
        )
    console.print(table)
    err.print(
        f"{len(shown)} grant(s)" + ("" if all_ else " in force (--all: revoked and expired too)"),
        style="dim",
    )
