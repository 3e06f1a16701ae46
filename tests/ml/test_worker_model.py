"""A real worker: idle without a model, then trains from its own warehouse and picks models up live."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate

pytestmark = pytest.mark.integration


def metric(ns: Namespace, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return -1.0


def train(ns: Namespace) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", "train", "--since", "30d"],
        env=ns.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_cold_start_then_train_through_the_worker_and_swap_without_restart(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_MODEL_RELOAD_SECONDS": "1"})
    worker = Worker(ns).start()
    try:
        wait_for(lambda: metric(ns, "pw_behaviour_model_loaded") == 0, 30, "cold start reported")
        ns.send(e for e, _ in generate(3000, seed=8, attack_kinds=(), events_per_hour=1800))
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 3000,
            180,
            "3,000 stored events",
        )

        out = train(ns)  # reads the warehouse through the running worker's /v1/sql
        assert "wrote" in out and "principal-hours" in out
        wait_for(lambda: metric(ns, "pw_behaviour_model_loaded") == 1, 60, "model picked up")
        assert metric(ns, "pw_behaviour_model_loads_total") == 1

        train(ns)  # a newer artifact: swapped in while the worker runs
        wait_for(
            lambda: metric(ns, "pw_behaviour_model_loads_total") == 2, 60, "newer model swapped in"
        )
        assert worker.alive()
        log = worker.log_path.read_text()
        assert log.count("stays idle") == 1, "the cold start is said once"
        assert len(list((Path(ns.env["PW_DATA_DIR"]) / "models").glob("behaviour-*"))) == 2
    finally:
        worker.stop()
