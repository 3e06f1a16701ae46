"""docs/operations.md's metrics table is the one generated from sinks/metrics.py, and names every alert rule."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sinks.metrics_table import defined, exposed_name, markdown_table

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()


def test_metrics_table_is_generated_from_sinks_metrics() -> None:
    found = re.search(
        r"<!-- metrics-table:start -->\n(.*?)\n<!-- metrics-table:end -->", OPERATIONS, re.S
    )
    assert found, "docs/operations.md: the metrics table markers are missing"
    assert found[1].strip() == markdown_table(), (
        "docs/operations.md's metrics table is out of date: replace it with the output of `python -m sinks.metrics_table`"
    )


def test_metric_names_follow_the_conventions() -> None:
    for metric in defined():
        name = exposed_name(metric)
        assert name.startswith("pw_") and re.fullmatch(r"[a-z0-9_]+", name), name
        if metric._type == "counter":
            assert name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|minutes|bytes_kb)$", name), (
            f"{name}: use base units"
        )
        assert not {"ip", "source_ip", "principal", "principal_id", "account", "account_id"} & set(
            metric._labelnames
        ), name


def test_operations_page_names_every_alert_rule() -> None:
    rules = yaml.safe_load(
        (ROOT / "infra" / "prometheus" / "rules" / "partnerwatch.rules.yml").read_text()
    )
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"`{rule['alert']}`" in OPERATIONS, (
                f"docs/operations.md: alert {rule['alert']} is not described"
            )
