"""`partnerwatch`: the command line, and the composition root.

`partnerwatch/` is the one package that may import `streams`, `sources` and `sinks`, and only inside the
commands that need them, so `partnerwatch simulate` never loads Faust or the warehouse.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from partnerwatch.alert_feed import alerts_cli
from partnerwatch.amazon import register as register_amazon
from partnerwatch.choices import Format
from partnerwatch.common import load_settings as _settings
from partnerwatch.common import parse_params, print_rows, run_query
from partnerwatch.deadletters import deadletter_cli
from partnerwatch.evaluation import evaluate
from partnerwatch.gateway import gateway_cli, provider_cli
from partnerwatch.grants import grants_cli
from partnerwatch.ingest_cli import send, validate
from partnerwatch.integrity import register as register_integrity
from partnerwatch.ml import register as register_ml
from partnerwatch.operations import config, kafka, loader, migrate, provider_stage, topics, worker
from partnerwatch.query import register as register_query
from partnerwatch.rules import rules_cli
from partnerwatch.scenarios import demo, simulate

cli = typer.Typer(
    help="PartnerWatch: audit and abuse detection for delegated seller access.",
    no_args_is_help=True,
    # help text is Markdown: paragraphs reflow to the terminal, `code` stands out
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"partnerwatch {version('partnerwatch')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("partnerwatch (not installed)")
        raise typer.Exit()


@cli.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """PartnerWatch: audit and abuse detection for delegated seller access."""


# config, kafka, topics, worker, provider-stage, migrate (partnerwatch/operations.py)
cli.command()(config)
cli.command()(kafka)
cli.command()(topics)
cli.command()(worker)
cli.command("provider-stage")(provider_stage)
cli.command()(migrate)
cli.command()(loader)


@cli.command()
def sql(
    query: Annotated[str, typer.Argument(help="a read-only statement; {name:Type} parameters")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="vertical: one `column: value` line each (wide results)",
            case_sensitive=False,
        ),
    ] = Format.table,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns", "-c", help="only these result columns, comma-separated, in this order"
        ),
    ] = None,
) -> None:
    """Query the warehouse (through the running worker, or directly when it is stopped); stderr says which."""
    names, rows = run_query(_settings(), query, parse_params(param or []))
    print_rows(names, rows, str(fmt), columns)


# simulate, demo (partnerwatch/scenarios.py); send FILE [--dry-run] [--wait], validate FILE
# (partnerwatch/ingest_cli.py); evaluate (partnerwatch/evaluation.py)
cli.command()(simulate)
cli.command("send")(send)
cli.command("validate")(validate)
cli.command()(demo)
cli.command()(evaluate)

# verify-chain, digest, evidence, report (partnerwatch/integrity.py)
register_integrity(cli)
# alerts tail|ack|resolve|feed|redeliver|check-routes (partnerwatch/alerts.py, partnerwatch/alert_feed.py)
cli.add_typer(alerts_cli, name="alerts")
# query (the named query library), hunt (retro-hunt a detector) (partnerwatch/query.py)
register_query(cli)
# train (partnerwatch/ml.py); `evaluate --ml` calls into it too
register_ml(cli)
# deadletter tail|show (partnerwatch/deadletters.py)
cli.add_typer(deadletter_cli, name="deadletter")
# grants add|list|revoke|import (partnerwatch/grants.py)
cli.add_typer(grants_cli, name="grants")
# gateway run|config|credentials, provider suspend|resume (partnerwatch/gateway.py)
cli.add_typer(gateway_cli, name="gateway")
cli.add_typer(provider_cli, name="provider")
# rules validate|test|hunt: Sigma rules as data (partnerwatch/rules.py)
cli.add_typer(rules_cli, name="rules")
# notifications run|config, poll run|once|config, elasticmq start|stop|status (partnerwatch/amazon.py)
register_amazon(cli)


def main() -> None:
    from sinks.kafka_io import KafkaAccessError

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        cli()
    except (
        KafkaAccessError
    ) as exc:  # unreachable broker, TLS or SASL refused: the cause and the setting
        sys.exit(f"error: {exc}")  # exit status 1


if __name__ == "__main__":
    main()
