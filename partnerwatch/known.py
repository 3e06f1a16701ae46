"""Values that come from data, checked before a command starts: detector ids (the detectors'
modules), accounts and providers (what the warehouse holds). An unknown value exits 2 with one
line that lists some known ones, instead of a filter that matches nothing, forever."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

import orjson
import typer

from partnerwatch.common import err, line, plain, post_sql
from pipeline.config import Settings

#: How many known values an error lists.
SHOWN = 30


def detector_ids() -> tuple[str, ...]:
    """Every detector id (one module per id in detectors/rules/)."""
    from detectors import MODULES

    return MODULES


def refuse(what: str, value: str, known: Iterable[str], option: str) -> typer.Exit:
    names = sorted(known)
    shown = ", ".join(names[:SHOWN]) + (
        f", ... ({len(names)} in all)" if len(names) > SHOWN else ""
    )
    err.print(
        line(
            f"[red]{option}: unknown {what}[/] ",
            plain(repr(value), "red"),
            "; known: ",
            plain(shown or "none yet"),
        ),
        soft_wrap=True,
        highlight=False,
    )
    return typer.Exit(2)


def check_detectors(names: Iterable[str], option: str = "--detector") -> None:
    known = detector_ids()
    for name in names:
        if name not in known:
            raise refuse("detector", name, known, option)


def quiet_query(
    settings: Settings, sql: str, params: dict[str, Any] | None = None
) -> list[list[Any]] | None:
    """Rows of a read-only query through the worker, else the embedded or server warehouse directly;
    None when no warehouse can answer: the caller then cannot check. Nothing is printed then,
    unless the worker answered with an error (busy past `post_sql`'s wait, a refused token):
    that is said on stderr, so a check skipped is never silent."""
    body = orjson.dumps({"query": sql, "params": params or {}})
    headers = {"Content-Type": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    try:
        with post_sql(
            f"{settings.web_url}/v1/sql", timeout=30, data=body, headers=headers
        ) as response:
            return list(orjson.loads(response.read())["rows"])
    except urllib.error.HTTPError as exc:
        err.print(
            line(
                "[yellow]not checked against the warehouse:[/] ",
                plain(f"the worker answered {exc.code}"),
                plain(
                    " (429: busy with user queries, PW_SQL_MAX_CONCURRENT)"
                    if exc.code == 429
                    else ""
                ),
            ),
            soft_wrap=True,
        )
        return None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    if not settings.clickhouse_url and not settings.warehouse_path.is_dir():
        return None
    from sinks.clickhouse import WarehouseError, open_warehouse

    try:
        warehouse = open_warehouse(settings)
        try:
            return list(warehouse.query(sql, params).rows)
        finally:
            warehouse.close()
    except WarehouseError:
        return None


def check_accounts(rows_of: Any, accounts: Iterable[str], option: str = "--account") -> bool:
    """Refuse an account with no stored event. `rows_of(sql, params)` runs a query (None: no
    warehouse to ask; then nothing is checked and False is returned)."""
    checked = False
    for account in accounts:
        rows = rows_of(
            "SELECT count() FROM audit.events WHERE account_id = {a:String}", {"a": account}
        )
        if rows is None:
            return False
        checked = True
        if not int(rows[0][0]):
            known = (
                rows_of(
                    "SELECT DISTINCT account_id FROM audit.events ORDER BY account_id LIMIT 100", {}
                )
                or []
            )
            raise refuse(
                "account (no event of it is stored)", account, [str(r[0]) for r in known], option
            )
    return checked


def check_provider(rows_of: Any, account: str, provider: str, option: str = "--provider") -> None:
    rows = rows_of(
        "SELECT count() FROM audit.events WHERE account_id = {a:String} AND provider_id = {p:String}",
        {"a": account, "p": provider},
    )
    if rows is not None and not int(rows[0][0]):
        known = (
            rows_of(
                "SELECT DISTINCT provider_id FROM audit.events WHERE account_id = {a:String} AND provider_id != '' ORDER BY provider_id LIMIT 100",
                {"a": account},
            )
            or []
        )
        raise refuse(f"provider on account {account}", provider, [str(r[0]) for r in known], option)
