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
from partnerwatch.integrity import register as register_integrity
from partnerwatch.ml import register as register_ml
from partnerwatch.query import register as register_query
from pipeline.config import (
    ENV_FILE_VARIABLE,
    Settings,
    detector_markdown_table,
    markdown_table,
    shown_value,
    variables,
)

cli = typer.Typer(help="PartnerWatch: audit and abuse detection for delegated seller access.", no_args_is_help=True)


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
def kafka(action: Annotated[str, typer.Argument(help="start | stop | status | reset")]) -> None:
    """Run the local single-node Kafka broker on the port of PW_KAFKA_BROKER (jars and data cached in PW_KAFKA_HOME)."""
    raise typer.Exit(kafka_runner(_settings(), action))


@cli.command()
def topics() -> None:
    """Create the pipeline topics (idempotent)."""
    from sinks.kafka_io import ensure_topics

    created = ensure_topics(_settings())
    console.print(f"created: {', '.join(created) or 'none (all exist)'}")


@cli.command()
def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="debug, info, warning or error (default: PW_LOG_LEVEL)")] = "",
) -> None:
    """Run the stream worker: ingest, sequence, detect, load the warehouse (unless
    PW_WAREHOUSE_LOADER=external: `partnerwatch loader` does), serve the HTTP API."""
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
    from streams.warehouse_loader import loader_mode_problem

    if problem := loader_mode_problem(settings):
        err.print(line("[red]configuration error:[/] ", plain(problem)))
        raise typer.Exit(2)
    ensure_topics(settings)
    from streams.worker import app

    level = {"warning": "warn"}.get(settings.log_level, settings.log_level)  # Faust's own spelling
    sys.argv = [sys.argv[0], "--loop", "uvloop", "worker", "-l", level]
    app.main()


@cli.command()
def loader() -> None:
    """Run the warehouse loader as a process of its own (pw.ledger and pw.alerts -> ClickHouse), with
    GET /v1/health and /metrics on PW_LOADER_HOST:PW_LOADER_PORT. Pair it with workers on
    PW_WAREHOUSE_LOADER=external and a ClickHouse server (PW_CLICKHOUSE_URL)."""
    from sinks.kafka_io import ensure_topics

    settings = _settings()  # logging configured here
    ensure_topics(settings)
    from streams.loader_process import run

    raise typer.Exit(run(settings))


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


@cli.command()
def sql(
    query: Annotated[str, typer.Argument(help="a read-only statement; {name:Type} parameters")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
) -> None:
    """Query the warehouse (through the running worker, or directly when it is stopped)."""
    columns, rows = run_query(_settings(), query, parse_params(param or []))
    print_rows(columns, rows, fmt)


def _produce(settings: Settings, items: Any, total: int, label: str, rate: float = 0.0) -> int:
    from sinks.kafka_io import ensure_topics, send_events

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


@cli.command()
def send(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event per line")]) -> None:
    """Produce a file of events to pw.actions, as they are (bad lines reach the dead-letter topic)."""
    settings = _settings()
    with file.open("rb") as handle:
        total = sum(1 for line in handle if line.strip())
    with file.open("rb") as handle:
        lines = (line.rstrip(b"\r\n") for line in handle if line.strip())
        sent = _produce(settings, lines, total, f"send {file.name}")
    err.print(f"produced {sent} messages to {settings.actions_topic}")


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
    if kafka_runner(settings, "start") != 0:
        err.print("[red]could not start the local Kafka broker[/]")
        raise typer.Exit(1)
    log_path = settings.data_dir / "worker.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    err.print(f"starting the worker (log: {log_path})")
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
        if keep_running:
            err.print(f"worker running (pid {proc.pid}); query with `partnerwatch sql`; Ctrl-C stops it")
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
    err.print("worker stopped; the warehouse stays queryable: partnerwatch sql \"SELECT ...\"")


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
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    ml: Annotated[bool, typer.Option("--ml", help="the behaviour model on behavioural anomalies instead (partnerwatch/ml.py)")] = False,
    ml_train_events: Annotated[int, typer.Option(help="--ml: benign history to train on")] = 140_000,
    ml_test_events: Annotated[int, typer.Option(help="--ml: benign events of the test window")] = 80_000,
    ml_episodes: Annotated[int, typer.Option(help="--ml: behavioural episodes to inject")] = 8,
    ml_target_far: Annotated[float, typer.Option(help="--ml: false alerts per 10,000 training events")] = 0.5,
    ml_pipeline: Annotated[bool, typer.Option("--pipeline", help="--ml: through the real worker on the local Kafka broker (a smaller stream: partnerwatch/ml_pipeline_eval.py)")] = False,
) -> None:
    """Run a labelled scenario (every attack kind among benign traffic) through the real pipeline
    on the local Kafka broker, in a namespace of its own, and score every detector.

    With --ml: train the behaviour model on a benign history and score it on injected
    behavioural anomalies, offline on vectors and through the detectors in process, beside the
    rules on the same stream (no broker needed)."""
    if ml:
        from partnerwatch.ml import evaluate_ml

        evaluate_ml(ml_train_events, ml_test_events, seed, ml_episodes, ml_target_far, as_json, pipeline=ml_pipeline)
        return
    import tempfile

    from detectors.run import new_state, observe
    from partnerwatch.local_worker import Namespace, Worker, metric, settled_alerts, wait_for
    from pipeline.alert import alert_id
    from pipeline.event import normalize
    from pipeline.simulation.scoring import score
    from pipeline.simulation.traffic import ATTACKS, generate

    if kafka_runner(_settings(), "start", quiet=True) != 0:
        err.print("[red]could not start the local Kafka broker[/]")
        raise typer.Exit(1)
    stream = list(generate(count, seed=seed, attack_rate=attack_rate, attack_kinds=ATTACKS, events_per_hour=1800))
    with tempfile.TemporaryDirectory(prefix="pw-evaluate-") as tmp:
        ns = Namespace(Path(tmp))
        worker = Worker(ns).start()
        try:
            ns.send(event for event, _ in stream)
            wait_for(lambda: metric(ns.port, "pw_events_accepted_total") >= len(stream), 600, "all events sequenced")
            alerts = settled_alerts(ns)
        finally:
            worker.stop()
    report = score(((e["event_id"], kind) for e, kind in stream), alerts.values())

    # The same log replayed through the detectors, in-process: the same alert ids.
    states: dict[str, Any] = {}
    config = ns.settings.detect  # the worker's own detection settings
    replayed = set()
    for event, _ in stream:
        ev = normalize(event)
        for f in observe(states.setdefault(ev["account_id"], new_state()), ev, config):
            replayed.add(alert_id(f.detector, f.key, f.window))
    identical = replayed == set(alerts)
    if as_json:
        sys.stdout.write(orjson.dumps({**report.as_dict(), "replay_identical_alert_ids": identical}).decode() + "\n")
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
        f"replayed alert ids identical: {identical}"
    )


# verify-chain, digest, evidence, report (partnerwatch/integrity.py)
register_integrity(cli)
# alerts tail|ack|resolve|feed|redeliver|check-routes (partnerwatch/alerts.py, partnerwatch/alert_feed.py)
cli.add_typer(alerts_cli, name="alerts")
# query (the named query library), hunt (retro-hunt a detector) (partnerwatch/query.py)
register_query(cli)
# train (partnerwatch/ml.py); `evaluate --ml` calls into it too
register_ml(cli)
# gateway run|config|credentials, provider suspend|resume (partnerwatch/gateway.py)
cli.add_typer(gateway_cli, name="gateway")
cli.add_typer(provider_cli, name="provider")
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
