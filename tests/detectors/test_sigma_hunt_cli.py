"""`partnerwatch rules hunt` over a stored warehouse: the rule's SQL through the read-only SQL
path, the same matches as the live evaluator; `rules validate` and `rules test` on a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import detectors.sigma
from detectors.sigma.evaluate import matches
from detectors.sigma.load import load
from pipeline.config import REPO_ROOT, Settings
from pipeline.event import format_ms
from pipeline.ledger import event_of
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import sequence

EXAMPLES = Path(detectors.sigma.__file__).parent / "examples"


def cli(*args: str, data: Path, folder: Path = EXAMPLES) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update({"PW_DATA_DIR": str(data), "PW_WEB_PORT": "1", "PW_RULES_DIR": str(folder)})
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", "rules", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_hunt_finds_what_the_stream_matched(tmp_path: Path) -> None:
    entries = sequence(
        [e for e, _ in generate(3000, seed=5, attack_rate=0.02, attack_kinds=ATTACKS)]
    )
    settings = Settings.from_env({"PW_DATA_DIR": str(tmp_path)})
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        store_events(warehouse, entries)
    finally:
        warehouse.close()
    live = matches(
        load(EXAMPLES),
        (event_of(e) for e in sorted(entries, key=lambda e: (e["occurred_at"], e["event_id"]))),
    )
    for name in ("provider_sensitive_action", "failed_writes_window"):
        done = cli(
            "hunt",
            name,
            "--from",
            "2026-10-01",
            "--to",
            "2026-12-01",
            "--format",
            "json",
            data=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        if name == "provider_sensitive_action":
            found = {(name, r["event_id"]) for r in rows}
        else:
            found = {(name, (r["account_id"],), format_ms(int(r["window_ms"]))) for r in rows}
        expected = {m for m in live if m[0] == name}
        assert expected and found == expected
    shown = cli(
        "hunt",
        "ip_churn_hour",
        "--from",
        "2026-10-01",
        "--to",
        "2026-12-01",
        "--sql",
        data=tmp_path,
    )
    assert (
        shown.stdout.startswith("SELECT account_id, principal_id, intDiv(")
        and "uniqExact(source_ip) >= 6" in shown.stdout
    )


def test_validate_and_test_report_a_broken_folder(tmp_path: Path) -> None:
    assert cli("validate", data=tmp_path).returncode == 0
    assert "30 of 30 cases passed" in cli("test", data=tmp_path).stdout
    folder = tmp_path / "rules"
    folder.mkdir()
    for p in EXAMPLES.glob("large_provider_refund*"):
        (folder / p.name).write_text(p.read_text())
    test_file = folder / "large_provider_refund.test.yml"
    test_file.write_text(test_file.read_text().replace("matches: 1", "matches: 2", 1))
    broken = cli("test", "--dir", str(folder), data=tmp_path)
    assert broken.returncode == 1 and "FAIL large_provider_refund.test.yml" in broken.stderr
    (folder / "large_provider_refund.yml").write_text(
        "title: x\nlogsource: {product: windows}\ndetection: {s: {a: b}, condition: s}\n"
    )
    invalid = cli("validate", "--dir", str(folder), data=tmp_path)
    assert invalid.returncode == 1 and "logsource" in invalid.stderr
