"""`partnerwatch train` and `partnerwatch evaluate --ml`: the behaviour model's commands.

Registered on the main CLI by `register(cli)` (partnerwatch/main.py). Training reads `audit.events`
back from the warehouse (through the running worker's /v1/sql, else directly), in pages, each
account's events in `seq` order, and builds vectors with the same feature code the detector runs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from detectors.behaviour.training import DEFAULT_DAY_TARGET_PER_10K, DEFAULT_TARGET_PER_10K

PAGE_ROWS = 50_000
_SPAN = re.compile(r"^(\d+)([dh])$")

#: One page of a window's events in (account, seq) order, after a (account, seq) position.
PAGE_QUERY = (
    "SELECT account_id, seq, payload FROM audit.events"
    " WHERE occurred_at >= {since:DateTime64(3, 'UTC')} AND occurred_at <= {until:DateTime64(3, 'UTC')}"
    " AND (account_id, seq) > ({account:String}, {seq:UInt64})"
    " ORDER BY account_id, seq LIMIT {limit:UInt32}"
)


def parse_span(text: str) -> int:
    """`30d` or `12h` -> milliseconds."""
    match = _SPAN.match(text.strip())
    if not match:
        raise typer.BadParameter(f"--since takes a span like 30d or 12h, got {text!r}")
    return int(match.group(1)) * (86_400_000 if match.group(2) == "d" else 3_600_000)


Query = Callable[[str, dict[str, Any]], tuple[list[str], list[list[Any]]]]


def warehouse_events(
    query: Query, since: str, until: str, page_rows: int = PAGE_ROWS
) -> Iterator[dict[str, Any]]:
    """The window's events, account by account in `seq` order, a page at a time.

    `query` runs one read-only statement (`run_query` through the worker or the warehouse).
    """
    from sinks.audit_store import ch_time

    account, seq = "", 0
    while True:
        params = {
            "since": ch_time(since),
            "until": ch_time(until),
            "account": account,
            "seq": seq,
            "limit": page_rows,
        }
        _, rows = query(PAGE_QUERY, params)
        for row in rows:
            yield orjson.loads(row[2])
        if len(rows) < page_rows:
            return
        account, seq = rows[-1][0], int(rows[-1][1])


def train(
    since: Annotated[
        str, typer.Option(help="history span ending at the newest stored event: 30d, 12h")
    ] = "30d",
    out: Annotated[
        Path | None,
        typer.Option(help="models directory (default PW_MODEL_DIR or PW_DATA_DIR/models)"),
    ] = None,
    target_far: Annotated[
        float,
        typer.Option(help="false alerts per 10,000 training events the hour threshold allows"),
    ] = DEFAULT_TARGET_PER_10K,
    day_target_far: Annotated[
        float,
        typer.Option(help="false alerts per 10,000 training events the day threshold allows"),
    ] = DEFAULT_DAY_TARGET_PER_10K,
    seed: Annotated[int, typer.Option(help="random_state of the forests")] = 0,
) -> None:
    """Fit the behaviour model on the warehouse's history and write a versioned artifact.

    A running worker picks the new artifact up within PW_MODEL_RELOAD_SECONDS.
    """
    from detectors.behaviour.training import train_and_save
    from partnerwatch.common import console, err, line, load_settings, plain, run_query
    from pipeline.event import format_ms, timestamp_ms

    settings = load_settings()
    span = parse_span(since)
    _, rows = run_query(
        settings, "SELECT toString(max(occurred_at)), count() FROM audit.events", {}
    )
    if not rows or int(rows[0][1]) == 0:
        err.print("[red]audit.events is empty: nothing to train on[/]")
        raise typer.Exit(1)
    newest = rows[0][0].replace(" ", "T")
    until = (newest if "." in newest else newest + ".000") + "Z"
    begin = format_ms(timestamp_ms(until, "until") - span)
    from partnerwatch.progress import phases

    try:
        with phases(f"reading events from {begin} to {until} and fitting the model"):
            path, trained = train_and_save(
                warehouse_events(lambda q, p: run_query(settings, q, p), begin, until),
                out or settings.models_path,
                target_per_10k=target_far,
                day_target_per_10k=day_target_far,
                random_state=seed,
            )
    except ValueError as exc:
        err.print(line("[red]cannot train:[/] ", plain(exc)))
        raise typer.Exit(1) from None
    t = trained.meta["training"]
    console.print(
        f"wrote {path}\n{t['events']} events, {t['vectors']} principal-hours from {begin} to {until};"
        f" threshold {trained.meta['threshold']:.4f} ({t['flagged_at_threshold']} training hours above it ="
        f" {t['false_alerts_per_10k_events']} per 10,000 events; target {target_far}); fit {t['fit_seconds']} s\n"
        + (
            f"day forest: {trained.meta['day_note']}; threshold {trained.meta['day']['threshold']:.4f}"
            f" (target {day_target_far})"
            if trained.meta["day"] is not None
            else f"no day forest: {trained.meta['day_note']}"
        )
    )


def evaluate_ml(
    train_events: int,
    test_events: int,
    seed: int,
    episodes: int,
    target_far: float,
    as_json: bool,
    *,
    pipeline: bool = False,
    day_target_far: float = DEFAULT_DAY_TARGET_PER_10K,
) -> None:
    """`partnerwatch evaluate --ml`: offline vectors and the in-process streaming path;
    with `--pipeline`, the real worker on the local broker instead (a smaller stream)."""
    from detectors.behaviour.evaluation import run

    if pipeline:
        _evaluate_pipeline(train_events, test_events, seed, episodes, target_far, as_json)
        return

    from partnerwatch.progress import phases

    with phases(
        "training on a benign history, then scoring injected anomalies (offline and in process)"
    ):
        report = run(
            train_events=train_events,
            test_events=test_events,
            seed=seed,
            episodes=episodes,
            target_per_10k=target_far,
            day_target_per_10k=day_target_far,
        )
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return
    print_ml_report(report)


def print_ml_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    from partnerwatch.common import console, line, plain

    off = report["offline_vectors"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    table = Table(
        "kind",
        "judged on",
        "anomalous",
        "ROC-AUC",
        "forest alone",
        "hours",
        "days",
        "recall",
        "episodes caught",
        title="per kind, offline on vectors (ROC-AUC of the detector score on the vectors the kind is judged on; then on hours and on days)",
    )
    for kind, k in off["per_kind"].items():
        judged = k.get(k["judged_on"], {})
        table.add_row(
            kind,
            k["judged_on"] + "s",
            str(judged.get("vectors", "-")),
            fmt(k["roc_auc"]),
            fmt(judged.get("roc_auc_forest")),
            fmt(k.get("hour", {}).get("roc_auc")),
            fmt(k.get("day", {}).get("roc_auc")),
            fmt(k["recall"]),
            f"{k['episodes_caught']}/{k['episodes']}",
        )
    console.print(table)
    kinds = Table(
        "vector kind", "vectors", "anomalous", "ROC-AUC", "precision", "recall", "false alerts"
    )
    for vkind, v in off["per_vector_kind"].items():
        kinds.add_row(
            vkind,
            str(v["vectors"]),
            str(v["anomalous"]),
            fmt(v["roc_auc"]),
            fmt(v["precision"]),
            fmt(v["recall"]),
            str(v["false_alerts"]),
        )
    console.print(kinds)
    console.print(
        f"trained on {off['train_events']} events ({off['train_vectors']} hours, {off['train_day_vectors']} days;"
        f" day forest: {off['day_forest']}); test: {off['test_vectors']} vectors, {off['test_benign_events']}"
        f" benign events. Thresholds: hours {off['threshold']:.4f}, days {fmt(off['day_threshold'])}.\n"
        f"offline: {off['false_alerts']} false alerts = {off['false_alerts_per_10k_benign']} per 10,000 benign"
        f" events; approved-sale lookalike vectors flagged {off['lookalike_vectors_flagged']}/{off['lookalike_vectors']};"
        f" episodes caught {off['episodes_caught']}/{off['episodes']}"
        + (
            ""
            if off["episodes_complete"]
            else " (the stream ends before the last episode day closes)"
        )
    )
    s = report.get("streaming_in_process")
    if s is None:
        return
    console.print(
        f"streaming (every rule + behaviour_anomaly, and the provider-wide stage, in process): {s['ml_alerts']} ML alerts,"
        f" {s['ml_true_alerts']} true, {s['ml_false_alerts']} false = {s['ml_false_alerts_per_10k_benign']} per"
        f" 10,000 benign events ({s['ml_alerts_on_lookalikes']} on approved-sale lookalikes); episodes caught"
        f" {s['episodes_caught']}/{s['episodes']}; per vector kind: "
        + ", ".join(
            f"{k} {v['alerts']} ({v['true_alerts']} true)"
            for k, v in s["ml_per_vector_kind"].items()
        )
        + "; rules: "
        + (
            ", ".join(
                f"{d} {r['alerts']} alerts ({r['naming_behaviour_events']} on behaviour events)"
                for d, r in s["rules"].items()
            )
            or "no alert"
        )
        + " in the test window"
    )
    for vkind, summary in s.get("example_summaries", {}).items():
        console.print(line(f"example ({vkind}): ", plain(summary)))


def _evaluate_pipeline(
    train_events: int, test_events: int, seed: int, episodes: int, target_far: float, as_json: bool
) -> None:
    from rich.table import Table

    from partnerwatch.common import KAFKA_SH, console, err, line, plain
    from partnerwatch.ml_pipeline_eval import PIPELINE_TEST_EVENTS, PIPELINE_TRAIN_EVENTS, run
    from partnerwatch.progress import phases

    try:
        with phases(
            "the behaviour model through the real worker on Kafka (training, then the test window)"
        ):
            report = run(
                kafka_sh=KAFKA_SH,
                train_events=min(train_events, PIPELINE_TRAIN_EVENTS),
                test_events=min(test_events, PIPELINE_TEST_EVENTS),
                seed=seed,
                episodes=episodes,
                target_per_10k=target_far,
            )
    except RuntimeError as exc:
        err.print(plain(exc, "red"))
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    table = Table(
        "vector kind",
        "alerts",
        "true",
        "precision",
        "anomalous vectors",
        "recall (vectors)",
        title="through the worker on Kafka: behaviour_anomaly alerts of the test window",
    )
    for vkind, v in report["per_vector_kind"].items():
        table.add_row(
            vkind,
            str(v["alerts"]),
            str(v["true_alerts"]),
            fmt(v["precision"]),
            str(v["anomalous_vectors"]),
            fmt(v["recall"]),
        )
    table.add_row(
        "all",
        str(report["ml_alerts"]),
        str(report["ml_true_alerts"]),
        fmt(report["ml_precision"]),
        str(sum(v["anomalous_vectors"] for v in report["per_vector_kind"].values())),
        fmt(report["ml_recall_vectors"]),
    )
    console.print(table)
    kinds = Table(
        "episode kind",
        "episodes caught",
        "vectors alerted / anomalous (of the span it is judged on)",
    )
    for kind, k in report["per_kind"].items():
        kinds.add_row(
            kind,
            f"{k['episodes_caught']}/{k['episodes']}",
            f"{k['vectors_alerted']}/{k['anomalous_vectors']}",
        )
    console.print(kinds)
    console.print(
        f"{report['events']} events ({report['train_events']} training, {report['test_benign_events']} benign in the test"
        f" window); threshold {report['threshold']:.4f}; day forest: {report['day_forest']}; {report['ml_false_alerts']} false ML alerts ="
        f" {report['ml_false_alerts_per_10k_benign']} per 10,000 benign events; episodes caught"
        f" {report['episodes_caught']}/{report['episodes']}\nROC-AUC of the detector score on this stream's test"
        " vectors (offline, the same model): "
        + ", ".join(f"{k} {fmt(v)}" for k, v in report["offline_roc_auc"].items())
        + "\nrules on the same stream (test window): "
        + (
            ", ".join(
                f"{d} {r['alerts']} alerts ({r['naming_behaviour_events']} on behaviour events)"
                for d, r in report["rules"].items()
            )
            or "no alert"
        )
        + f"\n{report['seconds']} s ({report['pipeline_seconds']} s through the worker)"
    )
    if report.get("example_summary"):
        console.print(line("example: ", plain(report["example_summary"])))


def register(cli: typer.Typer) -> None:
    cli.command("train")(train)
