"""`partnerwatch rules validate|test|hunt`: Sigma rules as data (detectors/sigma).

The folder is `--dir`, else PW_RULES_DIR, else the examples shipped in detectors/sigma/examples.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from partnerwatch.common import console, err, load_settings, print_rows, run_query

rules_cli = typer.Typer(
    help="Sigma rules: validate, run their tests, hunt over the warehouse.", no_args_is_help=True
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="folder of Sigma rules (default: PW_RULES_DIR, else the shipped examples)"
    ),
]


def _folder(folder: Path | None) -> Path:
    if folder is not None:
        return folder
    configured = load_settings().rules_dir
    if configured:
        return Path(configured)
    import detectors.sigma

    return Path(detectors.sigma.__file__).parent / "examples"


def _load(folder: Path):  # type: ignore[no-untyped-def]
    from detectors.sigma import RuleError
    from detectors.sigma.load import load

    try:
        return load(folder)
    except RuleError as exc:
        err.print(f"[red]invalid rule:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from None


@rules_cli.command()
def validate(folder: DirOption = None) -> None:
    """Parse every rule (pySigma) and check PartnerWatch can run it live and in SQL."""
    from detectors.sigma.sql import query

    path = _folder(folder)
    ruleset = _load(path)
    for name in ruleset.names:
        query(name, ruleset)
    console.print(
        f"{len(ruleset.rules)} detection rules and {len(ruleset.correlations)} correlations in {path}: valid",
        highlight=False,
    )


@rules_cli.command("test")
def test_rules(folder: DirOption = None) -> None:
    """Run every rule's tests (`<rule>.test.yml` beside it); exit 1 when one fails."""
    from detectors.sigma import RuleError
    from detectors.sigma.testing import run_tests

    path = _folder(folder)
    ruleset = _load(path)
    try:
        results = run_tests(path, ruleset)
    except RuleError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    failed = [r for r in results if not r.passed]
    for r in failed:
        err.print(
            f"FAIL {r.file}: {r.case}: expected {r.expected} matches, found {r.found}",
            highlight=False,
            markup=False,
        )
    console.print(f"{len(results) - len(failed)} of {len(results)} cases passed", highlight=False)
    if failed:
        raise typer.Exit(1)


@rules_cli.command()
def hunt(
    name: Annotated[str, typer.Argument(help="the rule or correlation to run")],
    from_: Annotated[
        str, typer.Option("--from", help="start (inclusive): a date or an RFC 3339 time")
    ],
    to: Annotated[str, typer.Option(help="end (exclusive): a date or an RFC 3339 time")],
    folder: DirOption = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json | csv")] = "table",
    show_sql: Annotated[
        bool, typer.Option("--sql", help="print the ClickHouse SQL instead of running it")
    ] = False,
) -> None:
    """Run one rule over the warehouse (audit.events) in [from, to): the events a detection rule
    matches, or the groups and windows (start, epoch ms) a correlation matches."""
    from detectors.sigma import RuleError
    from detectors.sigma.sql import query
    from pipeline.forensics.chain_check import ch_ms, parse_when

    ruleset = _load(_folder(folder))
    try:
        sql = query(name, ruleset)
        since, until = ch_ms(parse_when(from_)), ch_ms(parse_when(to))
    except (RuleError, ValueError) as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    if show_sql:
        sys.stdout.write(sql + "\n")
        return
    columns, rows = run_query(load_settings(), sql, {"since": since, "until": until})
    print_rows(columns, rows, fmt)
