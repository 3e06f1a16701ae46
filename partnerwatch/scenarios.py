"""Simulated traffic: `simulate` (events with injected attacks to pw.actions) and `demo` (Kafka, a
worker and the simulator, locally).

Registered on the main CLI by partnerwatch/main.py; composition-root code like it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from partnerwatch.common import err, kafka_runner, line, plain, print_rows, run_query, worker_health
from partnerwatch.common import load_settings as _settings
from partnerwatch.operations import require_web_port
from partnerwatch.preflight import EXIT_UNAVAILABLE, kafka_errors, require_broker
from pipeline.config import Settings


def _produce(settings: Settings, items: Any, total: int, label: str, rate: float = 0.0) -> int:
    from sinks.kafka_io import ensure_topics, send_events

    require_broker(settings)
    with kafka_errors(settings):
        return _produce_to(settings, ensure_topics, send_events, items, total, label, rate)


def _produce_to(
    settings: Settings,
    ensure_topics: Any,
    send_events: Any,
    items: Any,
    total: int,
    label: str,
    rate: float,
) -> int:
    ensure_topics(settings)
    started = time.monotonic()
    sent = 0
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
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


def simulate(
    count: Annotated[int, typer.Option(help="events to produce (grants included)")] = 10_000,
    rate: Annotated[float, typer.Option(help="events per second; 0 = as fast as possible")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="same seed, same events (and event ids)")] = None,
    accounts: Annotated[int, typer.Option()] = 6,
    providers: Annotated[int, typer.Option()] = 4,
    attack_rate: Annotated[float, typer.Option(help="attack instances per benign event")] = 0.01,
    attacks: Annotated[
        str,
        typer.Option(help="'all', or comma-separated kinds (see pipeline/simulation/attacks.py)"),
    ] = "all",
    truth: Annotated[
        Path | None, typer.Option(help="write injected attacks (event_id, kind) as JSONL")
    ] = None,
) -> None:
    """Produce realistic provider traffic with injected attacks to pw.actions."""
    from pipeline.simulation.traffic import ATTACKS, generate

    settings = _settings()
    kinds = (
        ATTACKS if attacks == "all" else tuple(k.strip() for k in attacks.split(",") if k.strip())
    )
    unknown = set(kinds) - set(ATTACKS)
    if unknown:
        err.print(
            f"[red]unknown attack kind(s): {', '.join(sorted(unknown))}; known: {', '.join(ATTACKS)}[/]"
        )
        raise typer.Exit(2)
    seed = seed if seed is not None else int(time.time())
    truth_file = truth.open("w") if truth else None

    def events() -> Any:
        for event, attack in generate(
            count,
            seed=seed,
            accounts=accounts,
            providers=providers,
            attack_rate=attack_rate,
            attack_kinds=kinds,
        ):
            if attack and truth_file:
                truth_file.write(
                    orjson.dumps({"event_id": event["event_id"], "attack": attack}).decode() + "\n"
                )
            yield event

    try:
        sent = _produce(settings, events(), count, f"simulate seed={seed}", rate)
    finally:
        if truth_file:
            truth_file.close()
    err.print(f"produced {sent} events to {settings.actions_topic} (seed {seed})")


def demo(
    count: Annotated[int, typer.Option(help="simulated events")] = 5000,
    rate: Annotated[float, typer.Option(help="events per second")] = 500.0,
    seed: Annotated[int | None, typer.Option()] = None,
    keep_running: Annotated[bool, typer.Option(help="leave Kafka and the worker running")] = False,
    amazon: Annotated[
        bool,
        typer.Option(
            "--amazon",
            help="the SP-API gateway, notifications (ElasticMQ) and polling against a local Amazon stand-in, with an agency gone rogue through and around the gateway",
        ),
    ] = False,
) -> None:
    """The main job, locally: Kafka, the worker and the simulator; prints alerts as they fire."""
    settings = _settings()
    if amazon:
        from partnerwatch.amazon_demo import run_demo

        raise typer.Exit(run_demo(settings, _wait_for_worker))
    status = kafka_runner(settings, "start")
    if status != 0:
        raise typer.Exit(
            EXIT_UNAVAILABLE if status == EXIT_UNAVAILABLE else 1
        )  # kafka.sh said why, in one line
    require_web_port(settings)
    log_path = settings.data_dir / "worker.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    err.print(line("starting the worker (log: ", plain(log_path), ")"))
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "worker"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_worker(settings, proc)
        tail = subprocess.Popen(
            [sys.executable, "-m", "partnerwatch", "alerts", "tail", "--from-now"]
        )
        time.sleep(2)
        seed = seed if seed is not None else int(time.time())
        simulate(
            count=count,
            rate=rate,
            seed=seed,
            accounts=6,
            providers=4,
            attack_rate=0.005,
            attacks="all",
            truth=None,
        )
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
        out.print(
            line(
                "  open ", plain(page, "cyan"), "   the alerts page: stored alerts, then live ones"
            )
        )
    else:
        out.print(
            line(
                "  open ",
                plain(page, "cyan"),
                "   the alerts page, while a worker runs (`partnerwatch worker`, or `demo --keep-running`)",
            )
        )
    steps = [
        (
            "partnerwatch alerts list",
            "the stored alerts and their status; `alerts show ID` for one",
        ),
        (
            f"partnerwatch report provider --account {account} --provider {provider} --quarter {year}Q{quarter} --out review.html",
            "a provider's quarter as an HTML review",
        ),
        (
            'partnerwatch sql "SELECT detector, count() FROM audit.alerts FINAL GROUP BY detector"',
            "SQL on the warehouse",
        ),
        ("partnerwatch verify-chain", "recompute every account's hash chain"),
        (
            "docker compose up -d",
            "Prometheus and Grafana (http://127.0.0.1:3000) on a ClickHouse server: docs/operations.md#grafana",
        ),
    ]
    for command, what in steps:
        out.print(
            line("  ", plain(command, "cyan"), "\n      ", plain(what, "dim")),
            highlight=False,
            soft_wrap=True,
        )


def _wait_for_worker(
    settings: Settings, proc: subprocess.Popen[bytes], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err.print(
                f"[red]the worker exited ({proc.returncode}); see {settings.data_dir / 'worker.log'}[/]"
            )
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
