"""A real worker's /metrics, and a real Prometheus (Debian package) scraping it.

One worker in its own namespace gets benign traffic with injected attacks, a few repeated events
and a few malformed messages. Its exposition is parsed with prometheus_client's parser: the new
metrics are there, their values agree with what was sent, and no label carries an IP, a
principal or an account id. Then `prometheus` runs on 127.0.0.1 with the project's rules, scrapes
the worker, and the same figures are read back through its HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from detectors import ALL
from partnerwatch.local_worker import Namespace, Worker, free_port, wait_for
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate
from tests.alert_feeds.alertmanager_server import SKIP_REASON, Alertmanager, binary
from tests.alert_feeds.receiver import Receiver

pytestmark = pytest.mark.integration

RULES = REPO_ROOT / "infra" / "prometheus" / "rules" / "partnerwatch.rules.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "infra" / "prometheus" / "prometheus.yml"
RULE_COUNT = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
#: Every label any pw_ metric may carry: small closed vocabularies only.
ALLOWED_LABELS = {
    "reason",
    "detector",
    "severity",
    "table",
    "topic",
    "partition",
    "le",
    "output",
    "result",
    "outcome",
    "status",
}
BAD = [b"not json at all", b"[1, 2, 3]", b"{", b'{"event_id": "x"}']
REPEATS = 20


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` whose labels include `labels`."""
    total = 0.0
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture(scope="module")
def worker_with_traffic(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Namespace, int]]:
    ns = Namespace(tmp_path_factory.mktemp("obs"))
    worker = Worker(ns).start()
    try:
        stream = list(generate(1500, seed=5, attack_rate=0.02))
        events = [e for e, _ in stream]
        sent = ns.send(events) + ns.send(events[:REPEATS]) + ns.send(BAD)
        assert sent == len(events) + REPEATS + len(BAD)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(events),
            180,
            "events stored",
        )

        def settled() -> bool:
            f = scrape(ns.port)
            handled = value(f, "pw_events_consumed_total")
            return (
                handled >= sent
                and value(f, "pw_events_rejected_total") >= len(BAD)
                and value(f, "pw_alert_latency_seconds_count") > 0
                and value(f, "pw_consumer_lag_messages") >= 0
                and "pw_warehouse_lag_messages" in f
                and any(
                    s.name == "pw_consumer_lag_messages"
                    for s in f["pw_consumer_lag_messages"].samples
                )
            )

        wait_for(settled, 90, "metrics to settle")
        yield ns, len(events)
    finally:
        worker.stop()


def test_worker_exposes_pipeline_metrics_with_sane_values(
    worker_with_traffic: tuple[Namespace, int],
) -> None:
    ns, accepted = worker_with_traffic
    f = scrape(ns.port)
    consumed = value(f, "pw_events_consumed_total")
    assert value(f, "pw_events_accepted_total") == accepted
    assert value(f, "pw_events_duplicate_total") == REPEATS
    assert value(f, "pw_events_rejected_total") == len(BAD)
    assert consumed == accepted + REPEATS + len(BAD)
    assert value(f, "pw_events_rejected_total", reason="not_json") >= 2

    # Alerts: the injected attacks raised some; each publication has a latency observation.
    alerts = value(f, "pw_alerts_total")
    assert alerts > 0
    assert value(f, "pw_alert_latency_seconds_count") >= 1
    assert value(f, "pw_alert_latency_seconds_sum") >= 0

    # Detector timing is sampled: every detector (by module state name) is timed on some events.
    timed = {
        s.labels["detector"]
        for s in f["pw_detector_evaluation_seconds"].samples
        if s.labels.get("detector")
    }
    assert timed == {name for name, _ in ALL}
    per_detector = value(f, "pw_detector_evaluation_seconds_count", detector="ip_outside_allowlist")
    assert 0 < per_detector <= consumed

    # Warehouse: batches observed, their rows add up to at least the events stored.
    assert value(f, "pw_warehouse_batch_rows_count") >= 1
    assert value(f, "pw_warehouse_batch_rows_sum") >= accepted
    assert value(f, "pw_warehouse_insert_seconds_count", table="audit.events") >= 1
    assert "pw_warehouse_failures" in f  # the counter family exists (0 here)

    # Lag: one series per topic and partition, never negative; the ingest topic is drained.
    lag = {
        (s.labels["topic"], s.labels["partition"]): s.value
        for s in f["pw_consumer_lag_messages"].samples
    }
    topics = {ns.settings.actions_topic, ns.settings.alerts_topic, ns.settings.deadletter_topic}
    assert {t for t, _ in lag} == topics
    assert {p for _, p in lag} == {str(p) for p in range(ns.settings.topic_partitions)}
    assert all(v >= 0 for v in lag.values())
    wlag = {
        (s.labels["topic"], s.labels["partition"]) for s in f["pw_warehouse_lag_messages"].samples
    }
    assert {t for t, _ in wlag} == {ns.settings.ledger_topic, ns.settings.alerts_topic}


def test_no_high_cardinality_labels(worker_with_traffic: tuple[Namespace, int]) -> None:
    ns, _ = worker_with_traffic
    f = scrape(ns.port)
    values_seen: set[str] = set()
    for name, family in f.items():
        if not name.startswith("pw_"):
            continue
        for s in family.samples:
            assert set(s.labels) <= ALLOWED_LABELS, f"{s.name} has labels {sorted(s.labels)}"
            values_seen.update(s.labels.values())
    accounts = {e["account_id"] for e, _ in generate(300, seed=5, attack_rate=0.02)}
    principals = {e["actor"]["principal_id"] for e, _ in generate(300, seed=5, attack_rate=0.02)}
    ips = {e.get("source", {}).get("ip") for e, _ in generate(300, seed=5, attack_rate=0.02)} - {
        None
    }
    assert not values_seen & (accounts | principals | ips)
    assert not any(v.count(".") == 3 and v.replace(".", "").isdigit() for v in values_seen), (
        "an IPv4 as a label"
    )


def _prometheus_api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]


@pytest.mark.skipif(
    shutil.which("prometheus") is None and not os.environ.get("CI"),
    reason="Debian's prometheus package is not installed (apt-get install prometheus; .ci/run installs it)",
)
@pytest.mark.skipif(binary() is None and not os.environ.get("CI"), reason=SKIP_REASON)
def test_prometheus_scrapes_the_worker_and_evaluates_the_rules(
    worker_with_traffic: tuple[Namespace, int], tmp_path: Path
) -> None:
    ns, accepted = worker_with_traffic
    port = free_port()
    # A real Alertmanager, reached through the `alerting:` block of infra/prometheus/prometheus.yml
    # (its compose address swapped for this one), and a rule that fires at once to prove the path.
    pager = Receiver()
    pager.set("up")
    alertmanager = Alertmanager(tmp_path / "am", f"{pager.url}/pager").start()
    alerting = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["alerting"]
    [target] = [
        t for am in alerting["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert target == "alertmanager:9093"  # the compose service
    alerting = json.loads(json.dumps(alerting).replace(target, f"127.0.0.1:{alertmanager.port}"))
    wiring = tmp_path / "wiring.rules.yml"
    wiring.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "wiring",
                        "rules": [
                            {
                                "alert": "PartnerWatchWiringCheck",
                                "expr": 'up{job="partnerwatch-worker"} == 1',
                                "labels": {"severity": "info"},
                            },
                        ],
                    }
                ]
            }
        )
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES), str(wiring)],
                "alerting": alerting,
                "scrape_configs": [
                    {
                        "job_name": "partnerwatch-worker",
                        "static_configs": [{"targets": [f"127.0.0.1:{ns.port}"]}],
                    }
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def scraped() -> bool:
            try:
                data = _prometheus_api(port, "/api/v1/query", query="sum(pw_events_accepted_total)")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False
            return bool(data["result"]) and float(data["result"][0]["value"][1]) == accepted

        wait_for(scraped, 60, "Prometheus to scrape the worker")
        up = _prometheus_api(port, "/api/v1/query", query='up{job="partnerwatch-worker"}')["result"]
        assert [r["value"][1] for r in up] == ["1"]
        consumed = _prometheus_api(port, "/api/v1/query", query="sum(pw_events_consumed_total)")[
            "result"
        ]
        assert float(consumed[0]["value"][1]) == accepted + REPEATS + len(BAD)
        lag = _prometheus_api(port, "/api/v1/query", query="count(pw_consumer_lag_messages)")[
            "result"
        ]
        assert (
            float(lag[0]["value"][1]) == 3 * ns.settings.topic_partitions
        )  # actions, alerts, dead letters
        p99 = "histogram_quantile(0.99, sum by (le) (pw_alert_latency_seconds_bucket))"
        assert (
            float(_prometheus_api(port, "/api/v1/query", query=p99)["result"][0]["value"][1]) >= 0
        )

        # The project's rules load and evaluate against the real series without errors.
        def rules_evaluated() -> bool:
            groups = _prometheus_api(port, "/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == RULE_COUNT + 1 and all(
                r.get("lastEvaluation", "").startswith("20") for r in rules
            )

        wait_for(rules_evaluated, 30, "rules evaluated")
        groups = _prometheus_api(port, "/api/v1/rules")["groups"]
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        firing = {
            a["labels"]["alertname"] for a in _prometheus_api(port, "/api/v1/alerts")["alerts"]
        }
        assert (
            "PartnerWatchWorkerDown" not in firing
            and "PartnerWatchWarehouseInsertsFailing" not in firing
        )

        # Prometheus sends its alerts to the Alertmanager, which notifies the receiver.
        active = _prometheus_api(port, "/api/v1/alertmanagers")["activeAlertmanagers"]
        assert [a["url"] for a in active] == [f"http://127.0.0.1:{alertmanager.port}/api/v2/alerts"]
        wait_for(
            lambda: any(
                a["labels"]["alertname"] == "PartnerWatchWiringCheck" for a in alertmanager.alerts()
            ),
            60,
            "the rule's alert at Alertmanager",
        )
        wait_for(
            lambda: any(b"PartnerWatchWiringCheck" in item.body for item in list(pager.received)),
            60,
            "Alertmanager's notification",
        )
    finally:
        alertmanager.stop()
        pager.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        time.sleep(0)
