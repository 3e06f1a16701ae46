"""`promtool check config`, `check rules` and `test rules` on infra/prometheus (Debian's prometheus package)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pipeline.config import REPO_ROOT

PROMETHEUS = REPO_ROOT / "infra" / "prometheus"
RULES = PROMETHEUS / "rules" / "partnerwatch.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "partnerwatch.rules.test.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("CI"),
    reason="promtool is not installed (apt-get install prometheus; .ci/run installs it, and in CI this test must run)",
)


def promtool(*args: str) -> str:
    done = subprocess.run(
        ["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_scrape_config_is_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    import yaml

    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    cases = [
        c
        for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for c in t.get("alert_rule_test", [])
    ]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts == fired, f"alerts never shown firing: {alerts - fired}"
    assert alerts == quiet, f"alerts never shown quiet: {alerts - quiet}"
