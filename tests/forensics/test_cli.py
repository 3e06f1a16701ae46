"""`partnerwatch query` and `partnerwatch hunt` as a user runs them: a child process on a data
folder holding a real embedded warehouse (no worker, so the CLI opens the warehouse itself)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import REPO_ROOT, Settings
from pipeline.forensics.queries import load
from pipeline.simulation.traffic import generate
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import detected_alerts, sequence

Stored = tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """A data folder whose warehouse holds a stream with attacks; the alerts of one account withheld."""
    root = tmp_path_factory.mktemp("cli")
    kinds = ("provider_without_grant", "funds_without_approval")
    entries = sequence(
        [
            e
            for e, _ in generate(
                1500, seed=41, accounts=2, providers=3, attack_rate=0.02, attack_kinds=kinds
            )
        ]
    )
    alerts = detected_alerts(entries)
    wh = EmbeddedWarehouse(Settings.from_env({"PW_DATA_DIR": str(root)}).warehouse_path)
    try:
        migrate(wh, Settings.from_env({}))
        store_events(wh, entries)
        store_alerts(wh, [a for a in alerts if a["account_id"] != "A0001SELLER"])
    finally:
        wh.close()
    return root, entries, alerts


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    # A port nothing listens on: the CLI finds no worker and opens the warehouse itself.
    env.update({"PW_DATA_DIR": str(root), "PW_WEB_PORT": "9", "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_list_shows_every_query_with_its_parameters(data_dir: Stored) -> None:
    root, _, _ = data_dir
    done = cli(root, "query", "--list", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = {doc["name"]: doc for doc in map(orjson.loads, done.stdout.splitlines())}
    library = load()
    assert set(listed) == set(library)
    for name, query in library.items():
        assert listed[name]["description"] == query.description
        assert [
            (p["name"], p["type"], p["required"], p["default"]) for p in listed[name]["params"]
        ] == [(p.name, p.type, p.required, p.default) for p in query.params]
    text = cli(root, "query", "--list")
    assert text.returncode == 0 and all(name in text.stdout for name in library)
    assert "--param network=<String>  (required)" in text.stdout


def test_query_json_and_csv_output(data_dir: Stored) -> None:
    root, entries, _ = data_dir
    done = cli(
        root,
        "query",
        "fund_moves",
        "--param",
        "from=2026-11-01",
        "-p",
        "to=2026-12-01",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    expected = sorted(
        (e for e in entries if e["action"].startswith("funds.")),
        key=lambda e: (e["occurred_at"], e["account_id"], e["seq"]),
    )
    assert len(expected) >= 3
    assert [(r["event_id"], r["amount_value"]) for r in rows] == [
        (e["event_id"], e["amount"]["value"]) for e in expected
    ]
    done = cli(
        root,
        "query",
        "top_writers",
        "-p",
        "from=2026-11-01",
        "-p",
        "to=2026-12-01",
        "-p",
        "limit=2",
        "-f",
        "csv",
    )
    assert done.returncode == 0, done.stderr
    table = list(csv.reader(io.StringIO(done.stdout)))
    assert (
        table[0][:4] == ["actor_type", "provider_id", "principal_id", "writes"] and len(table) == 3
    )
    assert int(table[1][3]) >= int(table[2][3]) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "no_such_query"), "no query named 'no_such_query'"),
        (
            ("query", "fund_moves", "-p", "from=2026-11-01"),
            "needs parameter to; it takes: from:DateTime64(3, 'UTC') to:DateTime64(3, 'UTC') [account:String='']",
        ),
        (
            ("query", "grant_history", "-p", "account=A", "-p", "provider=x"),
            "has no parameter provider",
        ),
        (("query", "grant_history", "-p", "account"), "key=value"),
        (("query", "grant_history", "-p", "account=A", "-f", "xml"), "'xml' is not one of"),
        (("query",), "name a query, or use --list"),
        (
            ("hunt", "--detector", "nope", "--from", "2026-11-01", "--to", "2026-12-01"),
            "unknown detector 'nope'",
        ),
    ],
)
def test_clear_errors(data_dir: Stored, args: tuple[str, ...], message: str) -> None:
    root, _, _ = data_dir
    done = cli(root, *args)
    assert done.returncode == 2
    assert message in " ".join((done.stderr + done.stdout).split())


def test_table_output_shows_values_as_data_not_markup(data_dir: Stored) -> None:
    root, _, _ = data_dir
    done = cli(root, "sql", "SELECT '[bold]x[/] [/0-32]' AS v", "-f", "table")
    assert done.returncode == 0, done.stderr
    assert "[bold]x[/] [/0-32]" in done.stdout


def test_sql_in_a_parameter_is_data(data_dir: Stored) -> None:
    root, _, _ = data_dir
    done = cli(
        root, "query", "grant_history", "-p", "account=A0000SELLER' UNION SELECT 1 --", "-f", "json"
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    bad = cli(root, "query", "from_ip", "-p", "network=1.2.3.4'; DROP TABLE audit.events; --")
    assert bad.returncode == 1 and "network must be an IP address or a CIDR" in bad.stderr


def test_hunt_marks_stored_alerts_and_publish_stores_only_new_ones(data_dir: Stored) -> None:
    root, _, alerts = data_dir
    args = (
        "hunt",
        "--detector",
        "provider_without_grant",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-01",
        "--format",
        "json",
    )
    expected = {
        a["alert_id"]: ("new" if a["account_id"] == "A0001SELLER" else "exists")
        for a in alerts
        if a["detector"] == "provider_without_grant"
    }
    assert "new" in expected.values() and "exists" in expected.values()
    done = cli(root, *args)
    assert done.returncode == 0, done.stderr
    assert {
        r["alert_id"]: r["status"] for r in map(orjson.loads, done.stdout.splitlines())
    } == expected
    published = cli(root, *args, "--publish")
    assert published.returncode == 0, published.stderr
    new = sum(1 for s in expected.values() if s == "new")
    assert f"stored {new} new alert(s)" in " ".join(published.stderr.split())
    again = cli(root, *args)
    assert {r["status"] for r in map(orjson.loads, again.stdout.splitlines())} == {"exists"}
    count = cli(
        root,
        "sql",
        "SELECT count() FROM audit.alerts FINAL WHERE detector = 'provider_without_grant'",
        "-f",
        "csv",
    )
    assert count.stdout.splitlines()[1] == str(len(expected))  # no duplicates
