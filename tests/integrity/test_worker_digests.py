"""The worker signs digests on its own timer, and the integrity commands work through its /v1/sql
while it owns the embedded warehouse (real Kafka broker, real worker process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate

pytestmark = pytest.mark.integration
KEY = "integration-test-digest-key-0123456789"


def test_worker_signs_digests_and_cli_reads_through_it(kafka_broker: str, tmp_path: Path) -> None:
    # The ingest clock is now, and the current hour is not closed: a negative delay lets the
    # worker digest it at once (a test shortcut; in production the delay is positive).
    ns = Namespace(
        tmp_path,
        extra_env={
            "PW_DIGEST_HMAC_KEY": KEY,
            "PW_DIGEST_INTERVAL": "1",
            "PW_DIGEST_DELAY": "-3600",
            "PW_DIGEST_PERIOD": "hour",
        },
    )
    events = [e for e, _ in generate(400, seed=23, accounts=2)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "partnerwatch", *args],
            env=ns.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )

    worker = Worker(ns).start()
    try:
        ns.send(events)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(events),
            120,
            "events stored",
        )
        wait_for(
            lambda: (
                int(ns.scalar("SELECT ifNull(sum(event_count), 0) FROM audit.chain_digests FINAL"))
                >= len(events)
            ),
            120,
            "digests signed by the worker",
        )
        rows = ns.sql("SELECT DISTINCT key_id, algorithm FROM audit.chain_digests")
        assert len(rows) == 1 and rows[0][0].startswith("hmac:") and rows[0][1] == "hmac-sha256"

        verified = cli("digest", "verify")
        assert verified.returncode == 0, verified.stderr
        assert "2 accounts verified" in " ".join(verified.stdout.split())
        ranged = cli("verify-chain", "--ingested-from", "2020-01-01", "--ingested-to", "2100-01-01")
        assert ranged.returncode == 0, ranged.stderr
        assert f"2 account chains verified, {len(events)} events in range" in " ".join(
            ranged.stdout.split()
        )
        refused = cli("digest", "create")
        assert refused.returncode == 1 and "the worker owns the embedded warehouse" in " ".join(
            refused.stderr.split()
        )

        account = events[0]["account_id"]
        out = tmp_path / "case.zip"
        made = cli(
            "evidence",
            "--account",
            account,
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--out",
            str(out),
        )
        assert made.returncode == 0, made.stderr
        checked = cli("evidence", "verify", str(out))
        assert checked.returncode == 0, checked.stderr
        assert "every entry is covered by" in " ".join(checked.stdout.split())
    finally:
        worker.stop()
    assert KEY not in worker.log_path.read_text(errors="replace")  # key material never logged
