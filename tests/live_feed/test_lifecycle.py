"""Acknowledge, resolve, reopen: over HTTP and from the CLI (through the worker, and with none),
with the rows checked in audit.alert_status."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import Namespace, wait_for
from pipeline.config import REPO_ROOT, Settings
from sinks.audit_store import store_alerts
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.live_feed.conftest import AUTH, Reader, provider_event, stream_url, unique

pytestmark = pytest.mark.integration

STATUS_ROWS = "SELECT status, actor, note, account_id FROM audit.alert_status WHERE alert_id = {id:String} ORDER BY at"


def post(
    ns: Namespace, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ns.port}{path}",
        data=body if isinstance(body, bytes) else orjson.dumps(body),
        headers={"Content-Type": "application/json"} | AUTH | (headers or {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", "alerts", *args],
        env=env | {"COLUMNS": "250"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def raised_alert(ns: Namespace) -> dict[str, Any]:
    """An alert fresh off the live feed (the warehouse may not hold it yet)."""
    account = unique("L")
    reader = Reader(stream_url(ns, f"account={account}"), AUTH)
    try:
        ns.send([provider_event(account, "auth.credentials_create")])
        return reader.wait_alerts(1)[0]
    finally:
        reader.close()


def test_http_lifecycle_records_who_did_what(live: Namespace) -> None:
    alert = raised_alert(live)
    path = f"/v1/alerts/{alert['alert_id']}"
    status, row = post(live, f"{path}/ack", {"by": "ana", "note": "on it"})
    assert status == 200, row
    assert (row["status"], row["actor"], row["account_id"]) == (
        "acknowledged",
        "ana",
        alert["account_id"],
    )
    status, doc = post(live, f"{path}/ack", {"by": "bo"})
    assert status == 409 and doc["current"]["status"] == "acknowledged" and "ana" in doc["error"]
    assert post(live, f"{path}/reopen", {"by": "bo"})[0] == 409  # only a resolved alert reopens
    status, row = post(live, f"{path}/resolve", {"by": "bo", "note": "credentials revoked"})
    assert status == 200 and row["status"] == "resolved"
    status, doc = post(live, f"{path}/resolve", {"by": "bo"})
    assert status == 409 and "is resolved by bo" in doc["error"]
    assert post(live, f"{path}/reopen", {"by": "cy", "note": "seen again"})[0] == 200
    assert post(live, f"{path}/ack", {"by": "cy"})[0] == 200  # reopened counts as open
    rows = live.sql(STATUS_ROWS, {"id": alert["alert_id"]})
    assert rows == [
        ["acknowledged", "ana", "on it", alert["account_id"]],
        ["resolved", "bo", "credentials revoked", alert["account_id"]],
        ["reopened", "cy", "seen again", alert["account_id"]],
        ["acknowledged", "cy", "", alert["account_id"]],
    ]
    current = live.sql(
        "SELECT argMax(status, at) FROM audit.alert_status WHERE alert_id = {id:String}",
        {"id": alert["alert_id"]},
    )
    assert current == [["acknowledged"]]


def test_http_refusals(live: Namespace) -> None:
    alert = raised_alert(live)
    path = f"/v1/alerts/{alert['alert_id']}"
    assert post(live, "/v1/alerts/no-such-alert/ack", {"by": "ana"})[0] == 404
    assert post(live, f"{path}/delete", {"by": "ana"})[0] == 404
    assert post(live, f"{path}/ack", {"by": ""})[0] == 400
    assert post(live, f"{path}/ack", {"by": "x" * 200})[0] == 400
    assert post(live, f"{path}/ack", b"by=ana")[0] == 400
    assert post(live, f"{path}/ack", {"by": "ana"}, {"Content-Type": "text/plain"})[0] == 415
    assert post(live, f"{path}/ack", {"by": "ana"}, {"Authorization": "Bearer wrong"})[0] == 401
    assert live.sql(STATUS_ROWS, {"id": alert["alert_id"]}) == []


def test_cli_goes_through_the_running_worker(live: Namespace) -> None:
    alert = raised_alert(live)
    wait_for(
        lambda: (
            live.scalar(
                "SELECT count() FROM audit.alerts WHERE alert_id = {id:String}",
                {"id": alert["alert_id"]},
            )
            > 0
        ),
        30,
        "the alert stored",
    )
    done = cli(
        live.env, "ack", alert["alert_id"], "--by", "dee", "--note", "checking with the provider"
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "acknowledged by dee" in done.stdout
    again = cli(live.env, "ack", alert["alert_id"], "--by", "dee")
    assert again.returncode == 1 and "is acknowledged by dee" in " ".join(again.stderr.split())
    assert cli(live.env, "resolve", "no-such-alert", "--by", "dee").returncode == 1
    rows = live.sql(STATUS_ROWS, {"id": alert["alert_id"]})
    assert rows == [["acknowledged", "dee", "checking with the provider", alert["account_id"]]]


def test_cli_writes_the_warehouse_itself_when_no_worker_runs(tmp_path: Path) -> None:
    ns = Namespace(tmp_path)  # no worker: nothing listens on its port
    settings = Settings.from_env(ns.env)
    alert_id = "a" * 32
    alert: dict[str, Any] = {
        "alert_id": alert_id,
        "detector": "provider_sensitive_action",
        "severity": "critical",
        "account_id": "ACC-9",
        "provider_id": "PROV-X",
        "principal_id": "p",
        "title": "t",
        "summary": "s",
        "evidence_event_ids": ["e1"],
        "first_seen": "2026-11-26T10:00:00.000Z",
        "last_seen": "2026-11-26T10:00:00.000Z",
        "count": 1,
        "response": [],
    }
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        store_alerts(warehouse, [alert])
    finally:
        warehouse.close()
    done = cli(ns.env, "resolve", alert_id, "--by", "eve", "--note", "false positive")
    assert done.returncode == 0, done.stderr + done.stdout
    again = cli(ns.env, "resolve", alert_id, "--by", "eve")
    assert again.returncode == 1 and "cannot resolve" in " ".join(again.stderr.split())
    assert cli(ns.env, "ack", "b" * 32, "--by", "eve").returncode == 1  # unknown
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        rows = warehouse.query(STATUS_ROWS, {"id": alert_id}).rows
    finally:
        warehouse.close()
    assert rows == [["resolved", "eve", "false positive", "ACC-9"]]
