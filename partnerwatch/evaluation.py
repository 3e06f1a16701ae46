"""`partnerwatch evaluate`: a labelled scenario through the real pipeline, every detector scored
(with `--ml`, the behaviour model: partnerwatch/ml.py).

Registered on the main CLI by partnerwatch/main.py; composition-root code like it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Column, Table

from partnerwatch.common import console, kafka_runner
from partnerwatch.common import load_settings as _settings
from partnerwatch.preflight import EXIT_UNAVAILABLE


def evaluate(
    count: Annotated[int, typer.Option(help="events in the labelled stream")] = 20_000,
    seed: Annotated[int, typer.Option()] = 7,
    attack_rate: Annotated[float, typer.Option(help="attack instances per benign event")] = 0.004,
    disorder: Annotated[
        float,
        typer.Option(
            "--disorder",
            help="arrival disorder: every event arrives up to this many seconds after it occurred (0: in order)",
            min=0,
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    ml: Annotated[
        bool,
        typer.Option(
            "--ml", help="the behaviour model on behavioural anomalies instead (partnerwatch/ml.py)"
        ),
    ] = False,
    ml_train_events: Annotated[
        int, typer.Option(help="--ml: benign history to train on")
    ] = 140_000,
    ml_test_events: Annotated[
        int, typer.Option(help="--ml: benign events of the test window")
    ] = 180_000,
    ml_episodes: Annotated[
        int,
        typer.Option(
            help="--ml: behavioural episodes to inject, approved-sale lookalikes included (12: two of each)"
        ),
    ] = 12,
    ml_target_far: Annotated[
        float, typer.Option(help="--ml: false alerts per 10,000 training events (hours)")
    ] = 0.35,
    ml_day_target_far: Annotated[
        float, typer.Option(help="--ml: false alerts per 10,000 training events (days)")
    ] = 0.1,
    ml_pipeline: Annotated[
        bool,
        typer.Option(
            "--pipeline",
            help="--ml: through the real worker on the local Kafka broker (a smaller stream: partnerwatch/ml_pipeline_eval.py)",
        ),
    ] = False,
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

        evaluate_ml(
            ml_train_events,
            ml_test_events,
            seed,
            ml_episodes,
            ml_target_far,
            as_json,
            pipeline=ml_pipeline,
            day_target_far=ml_day_target_far,
        )
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
        raise typer.Exit(
            EXIT_UNAVAILABLE if status == EXIT_UNAVAILABLE else 1
        )  # kafka.sh said why, in one line
    from partnerwatch.progress import phases

    stream = list(
        generate(
            count, seed=seed, attack_rate=attack_rate, attack_kinds=ATTACKS, events_per_hour=1800
        )
    )
    if disorder > 0:
        stream = disordered(stream, disorder, seed)
    with (
        tempfile.TemporaryDirectory(prefix="pw-evaluate-") as tmp,
        phases("starting a worker in a namespace of its own") as say,
    ):
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
            wait_for(
                lambda: metric(ns.port, "pw_provider_stage_events_total") >= len(stream),
                600,
                "the provider stage folded all",
            )
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
        sys.stdout.write(
            orjson.dumps(
                {
                    **report.as_dict(),
                    "disorder_seconds": disorder,
                    "replay_identical_alert_ids": identical,
                    "provider_stage_replay_identical_alert_ids": identical_wide,
                }
            ).decode()
            + "\n"
        )
        return
    table = Table("alerts", "true", "false", "injected", "caught", "recall", "precision")
    table.columns.insert(0, Column("detector", no_wrap=True))
    for row in report.as_dict()["detectors"]:
        table.add_row(
            row["detector"],
            str(row["alerts"]),
            str(row["true_alerts"]),
            str(row["false_alerts"]),
            str(row["injected"]),
            str(row["caught"]),
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
