"""`partnerwatch`: the command line, and the composition root.

`partnerwatch/` is the one package that may import `streams`, `sources` and `sinks`, and only inside the
commands that need them, so `partnerwatch simulate` never loads Faust or the warehouse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from partnerwatch.alert_feed import alerts_cli
from partnerwatch.amazon import register as register_amazon
from partnerwatch.choices import Format, KafkaAction
from partnerwatch.common import (
    console,
    err,
    kafka_runner,
    line,
    parse_params,
    plain,
    print_rows,
    run_query,
    worker_health,
)
from partnerwatch.common import load_settings as _settings
from partnerwatch.gateway import gateway_cli, provider_cli
from partnerwatch.grants import grants_cli
from partnerwatch.ingest_cli import deadletter_cli, send, validate
from partnerwatch.integrity import register as register_integrity
from partnerwatch.ml import register as register_ml
from partnerwatch.preflight import (
    EXIT_UNAVAILABLE,
    kafka_errors,
    require_broker,
    require_free_port,
    say_warehouse,
)
from partnerwatch.query import register as register_query
from partnerwatch.rules import rules_cli
from pipeline.config import (
    ENV_FILE_VARIABLE,
    Settings,
    detector_markdown_table,
    markdown_table,
    shown_value,
    variables,
)

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
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """PartnerWatch: audit and abuse detection for delegated seller access."""


@cli.command()
def config(
    markdown: Annotated[bool, typer.Option(help="print the table in docs/operations.md (with --detectors: docs/detectors.md)")] = False,
    detectors: Annotated[bool, typer.Option(help="only the detectors' thresholds (PW_DETECT_*)")] = False,
) -> None:
    """Show the configuration in force: every PW_* variable, its value (secrets as ***) and where it
    came from (environment, the PW_ENV_FILE file, or default)."""
    if markdown:
        print(detector_markdown_table() if detectors else markdown_table())
        return
    s = _settings()
    env_file = os.environ.get(ENV_FILE_VARIABLE)
    if env_file and not detectors:
        print(f"{ENV_FILE_VARIABLE} = {env_file!r}  (environment)")
    for var in variables():
        if detectors and var.path[0] != "detect":
            continue
        print(f"{var.env} = {shown_value(s, var)}  ({s.origin(var.env)})")


@cli.command()
def kafka(action: Annotated[KafkaAction, typer.Argument(help="what to do with the local broker", case_sensitive=False)]) -> None:
    """Run the local single-node Kafka broker on the port of PW_KAFKA_BROKER (jars and data cached in PW_KAFKA_HOME)."""
    raise typer.Exit(kafka_runner(_settings(), str(action)))


@cli.command()
def topics() -> None:
    """Create the pipeline topics (idempotent)."""
    from sinks.kafka_io import ensure_topics

    settings = _settings()
    require_broker(settings)
    with kafka_errors(settings):
        created = ensure_topics(settings)
    console.print(f"created: {', '.join(created) or 'none (all exist)'}")


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="debug, info, warning or error (default: PW_LOG_LEVEL)")] = "",
) -> None:
    """Run the stream worker: ingest, sequence, detect, load the warehouse, serve the HTTP API."""
    import mode.loop

    from sinks.kafka_io import ensure_topics

    # Faust reads `--loop` from argv when it is first imported, which is before argv is set
    # below: choose uvloop here, before any event loop exists.
    mode.loop.use("uvloop")

    from streams.web.guard import exposure_error

    settings = _settings(**({"log_level": loglevel} if loglevel else {}))  # logging configured here, once
    if problem := exposure_error(settings):  # checked again when streams.app is imported
        err.print(line("[red]configuration error:[/] ", plain(problem)))
        raise typer.Exit(2)
    from detectors import geo

    try:  # the geoip mmdb files, if set, open now: a wrong path stops the worker here, not at the first event
        geo.configure(settings.geoip_city_db, settings.geoip_asn_db)
    except ValueError as exc:
        err.print(line("[red]configuration error:[/] ", plain(exc)))
        raise typer.Exit(2) from None
    _require_web_port(settings)
    require_broker(settings)
    with kafka_errors(settings):
        ensure_topics(settings)
    say_warehouse(settings, via_worker=False)
    from streams.worker import app

    level = {"warning": "warn"}.get(settings.log_level, settings.log_level)  # Faust's own spelling
    sys.argv = [sys.argv[0], "--loop", "uvloop", "worker", "-l", level]
    app.main()


@cli.command("provider-stage")
def provider_stage(
    metrics_port: Annotated[int, typer.Option(help="serve /metrics on this port of 127.0.0.1 (0: none)")] = 0,
) -> None:
    """Run the provider-wide stage on its own: pw.ledger of every account -> the provider-wide
    rules -> pw.alerts (workers then run with PW_PROVIDER_STAGE=off; several of these may run,
    one holds the ledger and the others stand by)."""
    from sinks.kafka_io import ensure_topics
    from streams.provider_stage import ProviderStage

    settings = _settings()  # logging configured here
    ensure_topics(settings)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    stage = ProviderStage(settings)
    stopping = False

    def _stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stage.start()
    while not stopping and stage.alive():
        time.sleep(0.2)
    stage.stop()


@cli.command()
def migrate(
    print_ddl: Annotated[bool, typer.Option("--print-ddl", help="print every migration's DDL as it would run (PW_CLICKHOUSE_CLUSTER: cluster DDL); connect to nothing")] = False,
) -> None:
    """Apply the warehouse migrations (the worker also does this at start)."""
    from sinks.clickhouse import (
        WarehouseError,
        bootstrap_ddl,
        migrate,
        migration_ddl,
        open_warehouse,
    )

    settings = _settings()
    if print_ddl:
        print(";\n\n".join(bootstrap_ddl(settings)) + ";\n")
        for version, name, statements in migration_ddl(settings):
            print(f"-- {version:04d}_{name}\n" + ";\n\n".join(statements) + ";\n")
        return
    try:
        warehouse = open_warehouse(settings)
        applied = migrate(warehouse, settings)
        warehouse.close()
    except WarehouseError as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(1) from None
    console.print(f"applied: {', '.join(applied) or 'none (up to date)'}")


def _require_web_port(settings: Settings) -> None:
    """A worker needs PW_WEB_PORT free: one line when a worker, or another program, holds it."""
    if worker_health(settings.web_url) is not None:
        err.print(
            line("[red]a worker already runs at[/] ", plain(settings.web_url, "red"),
                 " (PW_WEB_PORT): use it, stop it, or give this one another PW_WEB_PORT and PW_DATA_DIR"),
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_UNAVAILABLE)
    require_free_port(settings.web_host, settings.web_port, "PW_WEB_PORT", "the worker's web server")


@cli.command()
def sql(
    query: Annotated[str, typer.Argument(help="a read-only statement; {name:Type} parameters")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="vertical: one `column: value` line each (wide results)", case_sensitive=False)] = Format.table,
    columns: Annotated[str | None, typer.Option("--columns", "-c", help="only these result columns, comma-separated, in this order")] = None,
) -> None:
    """Query the warehouse (through the running worker, or directly when it is stopped); stderr says which."""
    names, rows = run_query(_settings(), query, parse_params(param or []))
    print_rows(names, rows, str(fmt), columns)


def _produce(settings: Settings, items: Any, total: int, label: str, rate: float = 0.0) -> int:
    from sinks.kafka_io import ensure_topics, send_events

    require_broker(settings)
    with kafka_errors(settings):
        return _produce_to(settings, ensure_topics, send_events, items, total, label, rate)


def _produce_to(settings: Settings, ensure_topics: Any, send_events: Any, items: Any, total: int, label: str, rate: float) -> int:
    ensure_topics(settings)
    started = time.monotonic()
    sent = 0
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=False
    ) as progress:
        task = progress.add_task(label, total=total or None)
        for sent in send_events(settings, items):
            if sent % 200 == 0 or sent == total:
                progress.update(task, completed=sent)
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        progress.update(task, completed=sent)
    return sent


@cli.command()
def simulate(
    count: Annotated[int, typer.Option(help="events to produce (grants included)")] = 10_000,
    rate: Annotated[float, typer.Option(help="events per second; 0 = as fast as possible")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="same seed, same events (and event ids)")] = None,
    accounts: Annotated[int, typer.Option()] = 6,
    providers: Annotated[int, typer.Option()] = 4,
    attack_rate: Annotated[float, typer.Option(help="attack instances per benign event")] = 0.01,
    attacks: Annotated[str, typer.Option(help="'all', or comma-separated kinds (see pipeline/simulation/attacks.py)")] = "all",
    truth: Annotated[Path | None, typer.Option(help="write injected attacks (event_id, kind) as JSONL")] = None,
) -> None:
    """Produce realistic provider traffic with injected attacks to pw.actions."""
    from pipeline.simulation.traffic import ATTACKS, generate

    settings = _settings()
    kinds = ATTACKS if attacks == "all" else tuple(k.strip() for k in attacks.split(",") if k.strip())
    unknown = set(kinds) - set(ATTACKS)
    if unknown:
        err.print(f"[red]unknown attack kind(s): {', '.join(sorted(unknown))}; known: {', '.join(ATTACKS)}[/]")
        raise typer.Exit(2)
    seed = seed if seed is not None else int(time.time())
    truth_file = truth.open("w") if truth else None

    def events() -> Any:
        for event, attack in generate(
            count, seed=seed, accounts=accounts, providers=providers, attack_rate=attack_rate, attack_kinds=kinds
        ):
            if attack and truth_file:
                truth_file.write(orjson.dumps({"event_id": event["event_id"], "attack": attack}).decode() + "\n")
            yield event

    try:
        sent = _produce(settings, events(), count, f"simulate seed={seed}", rate)
    finally:
        if truth_file:
            truth_file.close()
    err.print(f"produced {sent} events to {settings.actions_topic} (seed {seed})")


# send FILE [--dry-run] [--wait], validate FILE (partnerwatch/ingest_cli.py)
cli.command("send")(send)
cli.command("validate")(validate)


@cli.command()
def demo(
    count: Annotated[int, typer.Option(help="simulated events")] = 5000,
    rate: Annotated[float, typer.Option(help="events per second")] = 500.0,
    seed: Annotated[int | None, typer.Option()] = None,
    keep_running: Annotated[bool, typer.Option(help="leave Kafka and the worker running")] = False,
    amazon: Annotated[bool, typer.Option("--amazon", help="the SP-API gateway, notifications (ElasticMQ) and polling against a local Amazon stand-in, with an agency gone rogue through and around the gateway")] = False,
) -> None:
    """The main job, locally: Kafka, the worker and the simulator; prints alerts as they fire."""
    settings = _settings()
    if amazon:
        from partnerwatch.amazon_demo import run_demo

        raise typer.Exit(run_demo(settings, _wait_for_worker))
    status = kafka_runner(settings, "start")
    if status != 0:
        raise typer.Exit(EXIT_UNAVAILABLE if status == EXIT_UNAVAILABLE else 1)  # kafka.sh said why, in one line
    _require_web_port(settings)
    log_path = settings.data_dir / "worker.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    err.print(line("starting the worker (log: ", plain(log_path), ")"))
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "worker"], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_worker(settings, proc)
        tail = subprocess.Popen([sys.executable, "-m", "partnerwatch", "alerts", "tail", "--from-now"])
        time.sleep(2)
        seed = seed if seed is not None else int(time.time())
        simulate(count=count, rate=rate, seed=seed, accounts=6, providers=4, attack_rate=0.005, attacks="all", truth=None)
        _wait_until_stored(settings, count, timeout=120)
        tail.terminate()
        tail.wait(10)
        columns, rows = run_query(
            settings,
            "SELECT (SELECT count() FROM audit.events) AS events,"
            " (SELECT count() FROM audit.alerts FINAL) AS alerts,"
            " (SELECT count(DISTINCT account_id) FROM audit.events) AS accounts",
            {},
        )
        print_rows(columns, rows, "table")
        _what_next(settings, keep_running)
        if keep_running:
            err.print(f"worker running (pid {proc.pid}); Ctrl-C stops it")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    err.print(
        f"worker stopped; the warehouse stays queryable. The Kafka broker is still running on {settings.kafka_broker}"
        " (`partnerwatch kafka stop` stops it; `make clean` removes its data and the warehouse's)"
    )


def _what_next(settings: Settings, keep_running: bool) -> None:
    """The demo's closing advice, with a real account, provider and quarter of the run."""
    _, rows = run_query(
        settings,
        "SELECT account_id, provider_id, toYear(last_seen), toQuarter(last_seen) FROM audit.alerts FINAL"
        " WHERE provider_id != '' ORDER BY last_seen DESC LIMIT 1",
        {},
    )
    account, provider, year, quarter = rows[0] if rows else ("A0001SELLER", "prov-000", 2026, 1)
    page = f"{settings.web_url}/alerts"
    out = err
    out.print("\n[bold]What next[/]")
    if keep_running:
        out.print(line("  open ", plain(page, "cyan"), "   the alerts page: stored alerts, then live ones"))
    else:
        out.print(line("  open ", plain(page, "cyan"), "   the alerts page, while a worker runs (`partnerwatch worker`, or `demo --keep-running`)"))
    steps = [
        ("partnerwatch alerts list", "the stored alerts and their status; `alerts show ID` for one"),
        (f"partnerwatch report provider --account {account} --provider {provider} --quarter {year}Q{quarter} --out review.html",
         "a provider's quarter as an HTML review"),
        ('partnerwatch sql "SELECT detector, count() FROM audit.alerts FINAL GROUP BY detector"', "SQL on the warehouse"),
        ("partnerwatch verify-chain", "recompute every account's hash chain"),
        ("docker compose up -d", "Prometheus and Grafana (http://127.0.0.1:3000) on a ClickHouse server: docs/operations.md#grafana"),
    ]
    for command, what in steps:
        out.print(line("  ", plain(command, "cyan"), "\n      ", plain(what, "dim")), highlight=False, soft_wrap=True)


def _wait_for_worker(settings: Settings, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err.print(f"[red]the worker exited ({proc.returncode}); see {settings.data_dir / 'worker.log'}[/]")
            raise typer.Exit(1)
        health = worker_health(settings.web_url)
        if health is not None and health.get("warehouse_error") != "starting":
            return
        time.sleep(0.5)
    err.print("[red]the worker did not become ready in time[/]")
    raise typer.Exit(1)


def _wait_until_stored(settings: Settings, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, rows = run_query(settings, "SELECT count() FROM audit.events", {})
        if int(rows[0][0]) >= at_least:
            return
        time.sleep(1)


@cli.command()
def evaluate(
    count: Annotated[int, typer.Option(help="events in the labelled stream")] = 20_000,
    seed: Annotated[int, typer.Option()] = 7,
    attack_rate: Annotated[float, typer.Option(help="attack instances per benign event")] = 0.004,
    disorder: Annotated[float, typer.Option("--disorder", help="arrival disorder: every event arrives up to this many seconds after it occurred (0: in order)", min=0)] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    ml: Annotated[bool, typer.Option("--ml", help="the behaviour model on behavioural anomalies instead (partnerwatch/ml.py)")] = False,
    ml_train_events: Annotated[int, typer.Option(help="--ml: benign history to train on")] = 140_000,
    ml_test_events: Annotated[int, typer.Option(help="--ml: benign events of the test window")] = 80_000,
    ml_episodes: Annotated[int, typer.Option(help="--ml: behavioural episodes to inject")] = 8,
    ml_target_far: Annotated[float, typer.Option(help="--ml: false alerts per 10,000 training events")] = 0.5,
    ml_pipeline: Annotated[bool, typer.Option("--pipeline", help="--ml: through the real worker on the local Kafka broker (a smaller stream: partnerwatch/ml_pipeline_eval.py)")] = False,
) -> None:
    """Run a labelled scenario (every attack kind among benign traffic) through the real pipeline
    on the local Kafka broker, in a namespace of its own, and score every detector (the
    provider-wide ones included).

    With --disorder SECONDS the events are sent in the order they would arrive if each arrived up
    to SECONDS after it occurred (pipeline/simulation/traffic.py `disordered`).

    With --ml: train the behaviour model on a benign history and score it on injected
    behavioural anomalies, offline on vectors and through the detectors in process, beside the
    rules on the same stream (no broker needed)."""
    if ml:
        from partnerwatch.ml import evaluate_ml

        evaluate_ml(ml_train_events, ml_test_events, seed, ml_episodes, ml_target_far, as_json, pipeline=ml_pipeline)
        return
    import tempfile

    from detectors.provider_wide import MODULES as PROVIDER_WIDE
    from detectors.provider_wide.run import Stage
    from detectors.run import new_state, observe
    from partnerwatch.local_worker import Namespace, Worker, metric, settled_alerts, wait_for
    from pipeline.alert import alert_id
    from pipeline.event import normalize
    from pipeline.simulation.scoring import score
    from pipeline.simulation.traffic import ATTACKS, disordered, generate

    status = kafka_runner(_settings(), "start", quiet=True)
    if status != 0:
        raise typer.Exit(EXIT_UNAVAILABLE if status == EXIT_UNAVAILABLE else 1)  # kafka.sh said why, in one line
    from partnerwatch.progress import phases

    stream = list(generate(count, seed=seed, attack_rate=attack_rate, attack_kinds=ATTACKS, events_per_hour=1800))
    if disorder > 0:
        stream = disordered(stream, disorder, seed)
    with tempfile.TemporaryDirectory(prefix="pw-evaluate-") as tmp, phases("starting a worker in a namespace of its own") as say:
        ns = Namespace(Path(tmp))
        worker = Worker(ns).start()
        try:
            say(f"sending {len(stream)} labelled events")
            ns.send(event for event, _ in stream)

            def sequenced() -> bool:
                done = metric(ns.port, "pw_events_accepted_total")
                say(f"the worker sequenced {int(done)} of {len(stream)} events")
                return done >= len(stream)

            wait_for(sequenced, 600, "all events sequenced")
            wait_for(lambda: metric(ns.port, "pw_provider_stage_events_total") >= len(stream), 600, "the provider stage folded all")
            say("collecting the alerts until none arrives for a while")
            alerts = settled_alerts(ns)
        finally:
            say("stopping the worker")
            worker.stop()
    report = score(((e["event_id"], kind) for e, kind in stream), alerts.values())

    # The same log replayed through the detectors, in-process: the same alert ids. The provider
    # stage folds the ledger's partitions merged by event time, not in the order sent, so its
    # ids are compared on their own.
    states: dict[str, Any] = {}
    config = ns.settings.detect  # the worker's own detection settings
    stage = Stage(config)
    replayed: set[str] = set()
    replayed_wide: set[str] = set()
    for event, _ in stream:
        ev = normalize(event)
        for f in observe(states.setdefault(ev["account_id"], new_state()), ev, config):
            replayed.add(alert_id(f.detector, f.key, f.window))
        replayed_wide.update(alert_id(f.detector, f.key, f.window) for f in stage.findings(ev))
    wide = {k for k, a in alerts.items() if a["detector"] in PROVIDER_WIDE}
    identical = replayed == set(alerts) - wide
    identical_wide = replayed_wide == wide
    if as_json:
        sys.stdout.write(orjson.dumps({
            **report.as_dict(), "disorder_seconds": disorder, "replay_identical_alert_ids": identical,
            "provider_stage_replay_identical_alert_ids": identical_wide,
        }).decode() + "\n")
        return
    table = Table("alerts", "true", "false", "injected", "caught", "recall", "precision")
    table.columns.insert(0, Column("detector", no_wrap=True))
    for row in report.as_dict()["detectors"]:
        table.add_row(
            row["detector"], str(row["alerts"]), str(row["true_alerts"]), str(row["false_alerts"]),
            str(row["injected"]), str(row["caught"]),
            "-" if row["recall"] is None else f"{row['recall']:.2f}",
            "-" if row["precision"] is None else f"{row['precision']:.2f}",
        )
    console.print(table)
    console.print(
        f"{report.events} events ({report.benign_events} benign, {report.attack_instances} attack instances); "
        f"{report.false_alerts} false alerts = {report.false_alerts_per_10k_benign:.2f} per 10,000 benign events; "
        f"replayed alert ids identical: {identical} (provider stage: {identical_wide})"
        + (f"; arrival disorder up to {disorder:g} s" if disorder else "")
    )


# verify-chain, digest, evidence, report (partnerwatch/integrity.py)
register_integrity(cli)
# alerts tail|ack|resolve|feed|redeliver|check-routes (partnerwatch/alerts.py, partnerwatch/alert_feed.py)
cli.add_typer(alerts_cli, name="alerts")
# query (the named query library), hunt (retro-hunt a detector) (partnerwatch/query.py)
register_query(cli)
# train (partnerwatch/ml.py); `evaluate --ml` calls into it too
register_ml(cli)
# deadletter tail|show (partnerwatch/ingest_cli.py)
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
    except KafkaAccessError as exc:  # unreachable broker, TLS or SASL refused: the cause and the setting
        sys.exit(f"error: {exc}")  # exit status 1


if __name__ == "__main__":
    main()
