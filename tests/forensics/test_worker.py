"""`partnerwatch query` and `hunt` while a real worker owns the embedded warehouse: both go
through its `/v1/sql` (read-only guard, JSON parameters), on the real local Kafka broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate
from tests.integrity.conftest import detected_alerts, sequence

pytestmark = pytest.mark.integration

DETECTOR = "provider_without_grant"


def cli(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**ns.env, "COLUMNS": "200"}
    assert env["PW_WEB_PORT"] == str(ns.port) and os.path.isdir(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_query_and_hunt_through_the_running_worker(kafka_broker: str, tmp_path: Path) -> None:
    stream = [
        e
        for e, _ in generate(
            1500, seed=53, accounts=2, providers=3, attack_rate=0.02, attack_kinds=(DETECTOR,)
        )
    ]
    expected = {
        a["alert_id"] for a in detected_alerts(sequence(stream)) if a["detector"] == DETECTOR
    }
    assert len(expected) >= 2
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    try:
        ns.send(stream)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(stream),
            240,
            "events stored",
        )
        wait_for(
            lambda: (
                {
                    r[0]
                    for r in ns.sql(
                        "SELECT alert_id FROM audit.alerts WHERE detector = {d:String}",
                        {"d": DETECTOR},
                    )
                }
                == expected
            ),
            120,
            "the worker's alerts stored",
        )

        done = cli(
            ns,
            "hunt",
            "--detector",
            DETECTOR,
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--format",
            "json",
        )
        assert done.returncode == 0, done.stderr
        found = {r["alert_id"]: r["status"] for r in map(orjson.loads, done.stdout.splitlines())}
        assert found == dict.fromkeys(
            expected, "exists"
        )  # the live pipeline raised them all already

        done = cli(
            ns,
            "query",
            "activity_per_minute",
            "-p",
            "from=2026-11-01",
            "-p",
            "to=2026-12-01",
            "-f",
            "json",
        )
        assert done.returncode == 0, done.stderr
        assert sum(orjson.loads(line)["events"] for line in done.stdout.splitlines()) == len(stream)

        bad = cli(ns, "query", "from_ip", "-p", "network=10.0.0.0/33")
        assert bad.returncode == 1 and "network must be an IP address or a CIDR" in bad.stderr
        ip = next(e["source"]["ip"] for e in stream if e.get("source"))
        good = cli(ns, "query", "from_ip", "-p", f"network={ip}", "-f", "json")
        assert good.returncode == 0, good.stderr
        assert [orjson.loads(line)["event_id"] for line in good.stdout.splitlines()] == [
            e["event_id"]
            for e in sorted(stream, key=lambda e: (e["occurred_at"], e["account_id"]))
            if e.get("source", {}).get("ip") == ip
        ]

        refused = cli(
            ns,
            "hunt",
            "--detector",
            DETECTOR,
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--publish",
        )
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        worker.stop()
