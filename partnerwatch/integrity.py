"""Integrity commands: `verify-chain`, `digest keygen|create|verify`, `evidence`, `report provider`.

Registered on the main CLI by `register(cli)`. Like `partnerwatch/main.py` this is composition-root
code: it may import `sinks` inside command bodies. Reads go to the warehouse directly (a
ClickHouse server, or the embedded engine when no worker holds it) or through the running worker's
`/v1/sql` (partnerwatch/warehouse_access.py); commands that write (`digest create`) need the
warehouse itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from partnerwatch.choices import DigestPeriod
from partnerwatch.common import console, err, line, plain
from partnerwatch.common import load_settings as _settings
from partnerwatch.warehouse_access import one_line_failures, warehouse_access
from pipeline.config import Settings
from pipeline.forensics.signing import Signer, Verifier
from pipeline.text import visible

digest_app = typer.Typer(
    help="Signed digests of each account's chain (audit.chain_digests).", no_args_is_help=True
)
evidence_app = typer.Typer(help="Evidence bundles for a case: create (options below) or `verify`.")
report_app = typer.Typer(help="Reports for compliance reviews.", no_args_is_help=True)


def register(cli: typer.Typer) -> None:
    """Add the integrity commands to the main CLI."""
    cli.command("verify-chain")(verify_chain)
    cli.add_typer(digest_app, name="digest")
    cli.add_typer(evidence_app, name="evidence")
    cli.add_typer(report_app, name="report")


def _when(text: str | None, name: str) -> int | None:
    from pipeline.forensics.chain_check import parse_when

    if text is None:
        return None
    try:
        return parse_when(text)
    except ValueError:
        raise typer.BadParameter(
            f"{name} takes a date or an RFC 3339 time, got {visible(repr(text))}"
        ) from None


# -- verify-chain ---------------------------------------------------------------------------------


def verify_chain(
    account: Annotated[str | None, typer.Option(help="one account (default: all)")] = None,
    ingested_from: Annotated[
        str | None,
        typer.Option(
            "--ingested-from", help="ledger (ingest) time, inclusive: a UTC date or RFC 3339"
        ),
    ] = None,
    ingested_to: Annotated[
        str | None, typer.Option("--ingested-to", help="ledger (ingest) time, exclusive")
    ] = None,
    old_from: Annotated[str | None, typer.Option("--from", hidden=True)] = None,
    old_to: Annotated[str | None, typer.Option("--to", hidden=True)] = None,
) -> None:
    """Recompute account hash chains from the warehouse; report each account's first break (seq, event_id).

    An account that cannot be read is reported and the others are still verified; the exit code
    is 1 when any account failed.

    A chain is in ingest order, so its range is in ingest time, [--ingested-from, --ingested-to): verification starts at the last entry ingested before --ingested-from (the anchor, whose hash the range must continue) and runs through the last entry ingested before --ingested-to. (`--from/--to`, in hunt, evidence and the query library, are event time.)
    """
    from pipeline.forensics.chain_check import accounts, verify_accounts

    if old_from is not None or old_to is not None:
        err.print(
            "[red]verify-chain's range is ingest time:[/] say --ingested-from / --ingested-to "
            "(--from/--to mean event time, in hunt and evidence)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    settings = _settings()
    start_ms, end_ms = _when(ingested_from, "--ingested-from"), _when(ingested_to, "--ingested-to")
    if end_ms is not None:
        end_ms -= (
            1  # exclusive: the last millisecond before it (verify_accounts takes an inclusive end)
        )
    from partnerwatch.progress import progress

    with one_line_failures(), warehouse_access(settings) as db:
        if account:
            from partnerwatch.known import check_accounts

            check_accounts(lambda sql, params: db.query(sql, params).rows, [account])
        names = [account] if account else accounts(db)
        with progress("verifying chains", len(names)) as advance:
            reports = verify_accounts(db, names, start_ms, end_ms)
            advance(len(names))
    total = sum(r.events for r in reports)
    failed = [r for r in reports if not r.ok]
    for r in failed:
        if r.broken:
            b = r.broken
            err.print(
                line(
                    "[red]account ",
                    plain(r.account, "red"),
                    f"[red]: chain breaks at seq {b.seq} (event ",
                    plain(b.event_id, "red"),
                    "[red]): ",
                    plain(b.problem, "red"),
                )
            )
        else:
            err.print(
                line("[red]account ", plain(r.account, "red"), "[red]: ", plain(r.error, "red"))
            )
    scope = " in range" if ingested_from or ingested_to else ""
    if failed:
        err.print(
            f"[red]{len(failed)} of {len(names)} account chains do not verify; {len(names) - len(failed)} verified, {total} events{scope}[/]"
        )
        raise typer.Exit(1)
    console.print(
        f"[green]{len(names)} account chains verified, {total} events{scope}, no break[/]"
    )


# -- digests --------------------------------------------------------------------------------------


def _signer(settings: Settings) -> Signer:
    from pipeline.forensics.signing import configured_signer

    with one_line_failures():
        signer = configured_signer(settings.digest_key_file, settings.digest_hmac_key)
    if signer is None:
        err.print(
            "[red]no digest key:[/] set PW_DIGEST_KEY_FILE (see `partnerwatch digest keygen`) or PW_DIGEST_HMAC_KEY"
        )
        raise typer.Exit(2)
    return signer


def _verifier(settings: Settings, public_key: Path | None) -> Verifier:
    from pipeline.forensics.signing import load_public

    if public_key:
        with one_line_failures():
            return load_public(public_key.read_bytes(), str(public_key))
    if settings.digest_hmac_key or settings.digest_key_file:
        return _signer(settings).verifier()  # the configured key (an auditor passes --public-key)
    err.print("[red]give --public-key (Ed25519), or set PW_DIGEST_HMAC_KEY for HMAC digests[/]")
    raise typer.Exit(2)


@digest_app.command("keygen")
def digest_keygen(
    private: Annotated[
        Path, typer.Option(help="private key file to write (mode 0600, never overwritten)")
    ] = Path("digest-key.pem"),
    public: Annotated[Path, typer.Option(help="public key file to write, for auditors")] = Path(
        "digest-key.pub.pem"
    ),
) -> None:
    """Write a new Ed25519 keypair; point PW_DIGEST_KEY_FILE at the private key."""
    from pipeline.forensics.signing import keygen

    if private.exists():
        err.print(line(plain(private, "red"), "[red] exists; not overwritten"))
        raise typer.Exit(1)
    key_id = keygen(private, public)
    console.print(
        line(f"key {key_id}: private key ", plain(private), " (0600), public key ", plain(public))
    )


@digest_app.command("create")
def digest_create(
    period: Annotated[
        DigestPeriod | None, typer.Option(help="default PW_DIGEST_PERIOD", case_sensitive=False)
    ] = None,
    account: Annotated[str | None, typer.Option(help="one account (default: all)")] = None,
) -> None:
    """Sign digests for closed periods not digested yet (idempotent; the worker does this periodically)."""
    from pipeline.forensics.digests import PERIOD_MS, create_digests

    settings = _settings()
    period_name = str(period or settings.digest_period)
    if period_name not in PERIOD_MS:
        raise typer.BadParameter(f"period must be one of {', '.join(PERIOD_MS)}")
    signer = _signer(settings)
    from partnerwatch.progress import phases

    with (
        one_line_failures(),
        warehouse_access(settings, write=True) as db,
        phases("signing digests of closed periods"),
    ):
        made, problems = create_digests(
            db,
            signer,
            period_name,
            int(time.time() * 1000),
            int(settings.digest_delay * 1000),
            account,
        )
    for problem in problems:
        err.print(plain(problem, "yellow"))
    console.print(f"{len(made)} digests signed with {signer.key_id}")
    if problems:
        raise typer.Exit(1)


@digest_app.command("verify")
def digest_verify(
    public_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Ed25519 public key (PEM)")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="one account (default: all with digests)")
    ] = None,
) -> None:
    """Check digest signatures, the chain of digests, and that the warehouse still matches them."""
    from pipeline.forensics.digest_verification import verify_digests

    settings = _settings()
    verifier = _verifier(settings, public_key)
    with one_line_failures(), warehouse_access(settings) as db:
        report = verify_digests(db, verifier, account)
    for problem in report.problems:
        err.print(plain(problem, "red"))
    if report.problems:
        raise typer.Exit(1)
    console.print(
        f"[green]{report.digests} digests of {report.accounts} accounts verified with {verifier.key_id}; "
        f"{report.events} stored events match them[/]"
    )


# -- evidence -------------------------------------------------------------------------------------


@evidence_app.callback(invoke_without_command=True)
def evidence(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Option(help="seller account")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="event time (occurred_at), UTC date or RFC 3339")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="event time, exclusive")] = None,
    out: Annotated[Path, typer.Option(help="zip to write")] = Path("case.zip"),
) -> None:
    """Write an evidence bundle: events and alerts of the period, chain proof, digests, manifest.

    `partnerwatch evidence verify case.zip` checks one without the warehouse.
    """
    from pipeline.forensics.evidence import build_bundle
    from pipeline.forensics.evidence_check import verify_bundle
    from pipeline.forensics.signing import configured_signer

    if ctx.invoked_subcommand is not None:
        return
    if not (account and start and end):
        raise typer.BadParameter("give --account, --from and --to (or the `verify` command)")
    start_ms, end_ms = _when(start, "--from"), _when(end, "--to")
    if start_ms is None or end_ms is None:  # both given (checked above), so both parsed
        raise typer.BadParameter("give --from and --to")
    settings = _settings()
    with one_line_failures():
        signer = configured_signer(settings.digest_key_file, settings.digest_hmac_key)
    with one_line_failures(), warehouse_access(settings) as db:
        from partnerwatch.known import check_accounts

        check_accounts(lambda sql, params: db.query(sql, params).rows, [account])
        from partnerwatch.progress import phases

        with phases("collecting events, alerts, chain proof and digests"):
            summary = build_bundle(
                db, account, start_ms, end_ms, out, signer, int(time.time() * 1000)
            )
    console.print(
        line(
            plain(out),
            f": {summary.events} events, {summary.alerts} alerts, chain seq {summary.chain_from}..{summary.chain_to}, "
            f"{summary.digests} digests"
            + (
                f", manifest signed with {signer.key_id}"
                if signer
                else ", manifest not signed (no digest key)"
            ),
        )
    )
    report = verify_bundle(
        out, hmac_verifier=signer.verifier() if signer else None, allow_unsigned=signer is None
    )
    for problem in report.problems:
        err.print(plain(problem, "red"))
    if report.problems:
        err.print("[red]the warehouse does not verify for this period: the bundle shows where[/]")
        raise typer.Exit(1)


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the evidence zip")],
    public_key: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="the seller's Ed25519 public key (PEM)"),
    ] = None,
    allow_unsigned: Annotated[
        bool,
        typer.Option(
            help="check an unsigned bundle's internal consistency only (the output starts with UNSIGNED)"
        ),
    ] = False,
) -> None:
    """Check a bundle offline: file hashes, the chain recomputed from payloads, digest signatures.

    An unsigned bundle fails (anyone could have written it) unless --allow-unsigned; with
    --public-key a missing signature always fails. HMAC-signed bundles need PW_DIGEST_HMAC_KEY.
    """
    from pipeline.forensics.evidence_check import verify_bundle
    from pipeline.forensics.signing import hmac_signer

    hmac_key = _settings().digest_hmac_key if not public_key else ""
    with one_line_failures():
        report = verify_bundle(
            bundle,
            public_key.read_bytes() if public_key else None,
            hmac_signer(hmac_key).verifier() if hmac_key else None,
            allow_unsigned=allow_unsigned and public_key is None,
        )
    for note in report.notes:  # an unsigned bundle's first note is the UNSIGNED line
        console.print(
            plain(note, "bold red" if report.unsigned and note is report.notes[0] else "dim")
        )
    for problem in report.problems:
        err.print(plain(problem, "red"))
    if report.problems:
        err.print(
            line(
                plain(bundle.name, "red"),
                f"[red] does NOT verify ({len(report.problems)} problems)",
            )
        )
        raise typer.Exit(1)
    if report.unsigned:
        console.print(line(plain(bundle.name, "yellow"), "[yellow] is consistent, but UNSIGNED[/]"))
    else:
        console.print(line(plain(bundle.name, "green"), "[green] verifies[/]"))


# -- reports --------------------------------------------------------------------------------------


@report_app.command("provider")
def report_provider(
    account: Annotated[str, typer.Option(help="seller account")],
    provider: Annotated[str, typer.Option(help="provider id")],
    quarter: Annotated[str, typer.Option(help="e.g. 2026Q3 (event time, UTC)")],
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("review.html"),
) -> None:
    """A provider's quarter on one account as a self-contained HTML review (charts and tables)."""
    from datetime import UTC, datetime

    from detectors.geo import lookup
    from pipeline.forensics.review import collect, quarter_bounds
    from pipeline.forensics.review_report import render

    try:
        quarter_bounds(quarter)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings()
    from partnerwatch.known import check_accounts, check_provider

    with one_line_failures(), warehouse_access(settings) as db:
        rows_of = lambda sql, params: db.query(sql, params).rows  # noqa: E731
        check_accounts(rows_of, [account])
        check_provider(rows_of, account, provider)
        review = collect(db, account, provider, quarter, lambda ip: lookup(ip).country)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(review, generated), encoding="utf-8")
    m = review.metrics()
    console.print(
        line(
            plain(out),
            f": {m['events']} events, {m['alerts']} alerts, {m['fund_moves']} fund moves, {m['ips']} IPs",
        )
    )
