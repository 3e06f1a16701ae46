"""The commands no other test runs, run as a user would: `python -m partnerwatch ...`.

config, topics, migrate, simulate, alerts check-routes, demo and evaluate (rules and --ml), each
in a namespace of its own (topic prefix, app id, data folder, web port) on the local broker, with
small counts, and their results checked against the broker, the warehouse or an independent
computation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from partnerwatch.local_worker import Namespace
from pipeline.config import REPO_ROOT, DetectionConfig
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.clickhouse import EmbeddedWarehouse
from tests.integration.settle import read_to_end

pytestmark = pytest.mark.integration


def run(
    ns: Namespace, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env={**ns.env, "COLUMNS": "200", **(env or {})},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_config_shows_values_their_origin_and_hides_secrets(tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    shown = run(
        ns, "config", env={"PW_DETECT_BULK_MIN_SKUS": "55", "PW_API_TOKEN": "tok-s3cret-1234"}
    )
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(" = ", 1) for line in shown.stdout.splitlines() if " = " in line)
    assert lines["PW_DETECT_BULK_MIN_SKUS"] == "55  (environment)"
    assert lines["PW_TOPIC_PREFIX"] == f"'t{ns.name}.'  (environment)"
    assert lines["PW_TOPIC_PARTITIONS"] == "4  (default)"
    assert lines["PW_API_TOKEN"].startswith("***")
    assert "tok-s3cret-1234" not in shown.stdout + shown.stderr

    detectors = run(ns, "config", "--detectors")
    names = [line.split(" = ")[0] for line in detectors.stdout.splitlines()]
    assert sorted(names) == sorted(f"PW_DETECT_{f.upper()}" for f in DetectionConfig.model_fields)

    bad = run(ns, "config", env={"PW_DETECT_BULK_MIN_SKUS": "many"})
    assert bad.returncode == 2 and "PW_DETECT_BULK_MIN_SKUS" in bad.stderr


def test_topics_creates_the_pipeline_topics_once(kafka_broker: str, tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    wanted = [*ns.settings.pipeline_topics, *ns.settings.state_topics]
    first = run(ns, "topics")
    assert first.returncode == 0, first.stderr
    assert sorted(re.sub(r"\s+", "", first.stdout.removeprefix("created:")).split(",")) == sorted(
        wanted
    )
    again = run(ns, "topics")
    assert again.returncode == 0 and "none (all exist)" in again.stdout
    consumer = KafkaConsumer(bootstrap_servers=ns.settings.kafka_broker)
    admin = KafkaAdminClient(bootstrap_servers=ns.settings.kafka_broker)
    try:
        assert set(wanted) <= set(admin.list_topics())
        assert (
            len(consumer.partitions_for_topic(ns.settings.actions_topic) or ())
            == ns.settings.topic_partitions
        )
    finally:
        consumer.close()
        admin.close()


def test_migrate_applies_each_migration_once_and_prints_ddl(tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    ddl = run(ns, "migrate", "--print-ddl", env={"PW_RETENTION_DAYS": "99"})
    assert ddl.returncode == 0, ddl.stderr
    assert (
        "CREATE TABLE IF NOT EXISTS audit.events" in ddl.stdout and "INTERVAL 99 DAY" in ddl.stdout
    )
    assert not ns.settings.warehouse_path.exists()  # --print-ddl connects to nothing

    first = run(ns, "migrate")
    assert first.returncode == 0, first.stderr
    applied = first.stdout.strip().removeprefix("applied: ").split(", ")
    migrations = sorted(p.stem for p in (REPO_ROOT / "sinks" / "migrations").glob("*.sql"))
    assert applied == migrations
    again = run(ns, "migrate")
    assert again.returncode == 0 and "none (up to date)" in again.stdout
    warehouse = EmbeddedWarehouse(ns.settings.warehouse_path)
    try:
        versions = [
            r[0]
            for r in warehouse.query(
                "SELECT version FROM audit.schema_migrations ORDER BY version"
            ).rows
        ]
        tables = {
            r[0]
            for r in warehouse.query("SELECT name FROM system.tables WHERE database = 'audit'").rows
        }
    finally:
        warehouse.close()
    assert versions == [int(m[:4]) for m in migrations]  # each once
    assert {"events", "alerts", "alert_status", "chain_digests"} <= tables


def test_simulate_produces_the_seeded_stream_and_its_truth(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    truth = tmp_path / "truth.jsonl"
    done = run(
        ns,
        "simulate",
        "--count",
        "400",
        "--seed",
        "9",
        "--attack-rate",
        "0.02",
        "--truth",
        str(truth),
    )
    assert done.returncode == 0, done.stderr
    assert f"produced 400 events to {ns.settings.actions_topic} (seed 9)" in done.stderr
    expected = list(
        generate(400, seed=9, accounts=6, providers=4, attack_rate=0.02, attack_kinds=ATTACKS)
    )
    records = sorted(
        read_to_end(ns, ns.settings.actions_topic), key=lambda r: (r.partition, r.offset)
    )
    got = [orjson.loads(r.value) for r in records]
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e, _ in expected)
    assert all(r.key == orjson.loads(r.value)["account_id"].encode() for r in records)
    for account in {e["account_id"] for e in got}:  # each account's events in generated order
        assert [e for e in got if e["account_id"] == account] == [
            e for e, _ in expected if e["account_id"] == account
        ]
    lines = [orjson.loads(line) for line in truth.read_text().splitlines()]
    assert lines == [{"event_id": e["event_id"], "attack": kind} for e, kind in expected if kind]
    assert lines

    unknown = run(ns, "simulate", "--count", "5", "--attacks", "teleport")
    assert unknown.returncode == 2 and "teleport" in unknown.stderr


def test_alerts_check_routes_prints_the_routes_or_names_the_problem(tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[outputs.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\nsecret_env = "HOOK_SECRET"\n\n'
        '[[routes]]\nname = "urgent"\nmin_severity = "high"\ndetectors = ["refund_burst"]\noutputs = ["hook"]\n'
    )
    ok = run(ns, "alerts", "check-routes", env={"PW_ALERT_ROUTES": str(routes), "HOOK_SECRET": "k"})
    assert ok.returncode == 0, ok.stderr
    assert (
        " ".join(ok.stdout.split())
        == "urgent: severity >= high, detectors refund_burst -> hook (escalations)"
    )

    missing_secret = run(ns, "alerts", "check-routes", env={"PW_ALERT_ROUTES": str(routes)})
    assert missing_secret.returncode == 2 and "HOOK_SECRET" in missing_secret.stderr
    unset = run(ns, "alerts", "check-routes")
    assert unset.returncode == 2 and "PW_ALERT_ROUTES" in unset.stderr
    example = run(
        ns,
        "alerts",
        "check-routes",
        env={
            "PW_ALERT_ROUTES": str(REPO_ROOT / "infra" / "alerts" / "routes.example.toml"),
            **{
                name: "https://example.com/x"
                for name in re.findall(
                    r'_env = "(\w+)"',
                    (REPO_ROOT / "infra" / "alerts" / "routes.example.toml").read_text(),
                )
            },
        },
    )
    assert example.returncode == 0, example.stderr
    assert len(example.stdout.splitlines()) == (
        REPO_ROOT / "infra" / "alerts" / "routes.example.toml"
    ).read_text().count("[[routes]]")


def test_demo_runs_the_pipeline_end_to_end(kafka_broker: str, tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    done = run(ns, "demo", "--count", "600", "--rate", "0", "--seed", "5", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "worker stopped" in done.stderr
    # the summary table: events, alerts, accounts
    (row,) = [
        line
        for line in done.stdout.splitlines()
        if re.fullmatch(r"[│|]\s*\d+\s*[│|]\s*\d+\s*[│|]\s*\d+\s*[│|]", line.strip())
    ]
    events, alerts, accounts = (int(v) for v in re.findall(r"\d+", row))
    warehouse = EmbeddedWarehouse(ns.settings.warehouse_path)  # the demo's worker has stopped
    try:
        stored = warehouse.query("SELECT count(), uniqExact(account_id) FROM audit.events").rows[0]
        stored_alerts = warehouse.query("SELECT count() FROM audit.alerts FINAL").rows[0][0]
    finally:
        warehouse.close()
    assert (events, accounts) == (600, 6) == (int(stored[0]), int(stored[1]))
    assert alerts == int(stored_alerts) and alerts > 0
    assert "account=" in done.stdout  # alerts tail printed alerts as they fired


def test_evaluate_scores_the_detectors_and_the_replay_agrees(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    done = run(
        ns,
        "evaluate",
        "--count",
        "2500",
        "--seed",
        "7",
        "--attack-rate",
        "0.01",
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(done.stdout.strip().splitlines()[-1])
    stream = list(
        generate(2_500, seed=7, attack_rate=0.01, attack_kinds=ATTACKS, events_per_hour=1800)
    )
    kinds = Counter(kind for _, kind in stream)
    assert report["events"] == 2_500 and report["benign_events"] == kinds[None]
    assert report["replay_identical_alert_ids"] is True
    rows = {r["detector"]: r for r in report["detectors"]}
    assert sum(r["injected"] for r in rows.values()) == report["attack_instances"] > 0
    for r in rows.values():
        assert (
            r["alerts"] == r["true_alerts"] + r["false_alerts"]
            and 0 <= r["caught"] <= r["injected"]
        )
    assert report["false_alerts"] == sum(r["false_alerts"] for r in rows.values())
    assert (
        sum(r["caught"] for r in rows.values()) > report["attack_instances"] / 2
    )  # most attacks are caught


def test_evaluate_ml_scores_the_behaviour_model(tmp_path: Path) -> None:
    """`evaluate --ml` (detectors/behaviour/evaluation.py), small: independent counts of the
    stream, consistent figures, and a model that ranks the injected hours above chance."""
    from pipeline.simulation.behaviour import generate as behaviour_generate

    ns = Namespace(tmp_path)
    done = run(
        ns,
        "evaluate",
        "--ml",
        "--ml-train-events",
        "30000",
        "--ml-test-events",
        "15000",
        "--ml-episodes",
        "4",
        "--seed",
        "11",
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(done.stdout.strip().splitlines()[-1])
    stream = list(
        behaviour_generate(
            45_000, seed=11, events_per_hour=1800.0, anomalies_after=30_000, episodes=4
        )
    )
    episodes = {
        m.group(1)
        for e, label in stream
        if label
        and label.startswith("behaviour:")
        and (m := re.search(r"-bhv(\d+)$", e["event_id"]))
    }
    off, live = report["offline_vectors"], report["streaming_in_process"]
    assert live["events"] == len(stream)
    assert off["episodes"] == live["episodes"] == len(episodes) > 0
    assert sum(k["episodes"] for k in off["per_kind"].values()) == len(episodes)
    assert (
        sum(off["test_anomalous_vectors"].values())
        == sum(v["anomalous"] for v in off["per_vector_kind"].values())
        > 0
    )
    assert sum(off["test_vectors"].values()) == sum(
        v["vectors"] for v in off["per_vector_kind"].values()
    )
    assert live["ml_alerts"] == live["ml_true_alerts"] + live["ml_false_alerts"]
    assert (
        0 <= off["episodes_caught"] <= off["episodes"]
        and 0 <= live["episodes_caught"] <= live["episodes"]
    )
    assert off["roc_auc"]["hour"] > 0.75  # labels and scores line up: injected hours rank high
    assert all(k["roc_auc"] is not None for k in off["per_kind"].values() if k["episodes"])
    assert live["ml_true_alerts"] > 0
