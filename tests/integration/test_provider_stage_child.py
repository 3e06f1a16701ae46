"""`PW_PROVIDER_STAGE=process`: the worker runs the provider stage as a child process
(streams/provider_stage_child.py), on the real broker.

The child is the worker's, shows its figures through the worker's /metrics, is started again
when it is killed (health says so meanwhile, and the stage resumes from its checkpoint: a spray
cut in half by the kill still ends in one alert naming all of it), stops with the worker, and
does not outlive a worker killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.common import http_open
from partnerwatch.local_worker import Namespace, Worker, metric, wait_for
from tests.integration.test_provider_stage import first_half_checkpointed, hit, spray_alerts

pytestmark = pytest.mark.integration


def health(ns: Namespace) -> tuple[int, dict[str, Any]]:
    import urllib.error

    try:
        with http_open(f"http://127.0.0.1:{ns.port}/v1/health", timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's new parent may not reap it at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def named_metrics(ns: Namespace, *names: str) -> list[str]:
    query = urllib.parse.urlencode([("name[]", name) for name in names])
    with http_open(f"http://127.0.0.1:{ns.port}/metrics?{query}", timeout=10) as response:
        return response.read().decode().splitlines()


def test_the_worker_runs_restarts_and_stops_its_stage_process(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(
        tmp_path,
        extra_env={"PW_PROVIDER_STAGE": "process", "PW_PROVIDER_CHECKPOINT_SECONDS": "0.5"},
    )
    worker = Worker(ns).start()
    try:
        assert worker.proc is not None
        stage = health(ns)[1]["provider_stage"]
        assert stage["mode"] == "process" and stage["status"] == "running", stage
        first_pid = stage["pid"]
        assert running(first_pid) and parent_of(first_pid) == worker.proc.pid
        # the stage's figures come from the child, through the worker's /metrics
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_active") == 1,
            60,
            "the stage process holds the ledger",
        )
        # `?name[]=`: those samples only, the child's read through the worker; a query for the
        # worker's own figures leaves the child's out
        only = [x for x in named_metrics(ns, "pw_provider_stage_active") if x[0] != "#"]
        assert only == ["pw_provider_stage_active 1.0"], only
        own = named_metrics(ns, "pw_events_consumed_total")
        assert "pw_events_consumed_total 0.0" in own
        assert not [x for x in own if "pw_provider_stage" in x or "python_gc" in x], own
        first_half_checkpointed(ns, "c1")

        os.kill(first_pid, signal.SIGKILL)
        seen: list[tuple[int, dict[str, Any]]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = health(ns)
            seen.append((status, body["provider_stage"]))
            if (
                body["provider_stage"]["status"] == "running"
                and body["provider_stage"]["pid"] != first_pid
            ):
                break
            time.sleep(0.05)
        restarting = [(status, s) for status, s in seen if s["status"] == "restarting"]
        assert restarting, seen  # health said so while the stage was down ...
        status, down = restarting[0]
        assert status == 503 and "SIGKILL" in down["error"], restarting[0]
        stage = seen[-1][1]  # ... and runs again, with a new child
        assert stage["status"] == "running" and stage["restarts"] == 1, seen[-1]
        assert running(stage["pid"]) and not running(first_pid)
        assert health(ns)[0] == 200
        assert metric(ns.port, "pw_provider_stage_process_restarts_total") == 1
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_active") == 1,
            60,
            "the new stage process holds the ledger",
        )
        # resumed from the checkpoint: the second half completes the spray in one alert
        ns.send([hit("c1", 2, 122), hit("c1", 3, 123)])
        alerts = spray_alerts(ns, "c1")
        assert metric(ns.port, "pw_provider_stage_events_total") == 2
        latest = max(alerts, key=lambda a: a["count"])
        assert {"c1-x0", "c1-x1", "c1-x2", "c1-x3"} <= set(latest["evidence_event_ids"])
        assert len({a["alert_id"] for a in alerts}) == 1

        child = stage["pid"]
        worker.stop()  # SIGTERM: the worker stops its child, which checkpoints and exits
        assert worker.proc.returncode == 0, worker.log_tail()
        assert not running(child)
    finally:
        with contextlib.suppress(ProcessLookupError):  # its process group, the child included
            worker.kill()


def test_the_stage_process_ends_with_a_worker_killed_alone(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_PROVIDER_STAGE": "process"})
    worker = Worker(ns).start()
    try:
        assert worker.proc is not None
        child = health(ns)[1]["provider_stage"]["pid"]
        assert running(child)
        os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, not its process group
        worker.proc.wait(30)
        wait_for(lambda: not running(child), 30, "the orphaned stage process to end")
    finally:
        with contextlib.suppress(ProcessLookupError):  # its process group, the child included
            worker.kill()
