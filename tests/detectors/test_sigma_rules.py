"""Sigma rules as data: the shipped examples pass their own tests, and the same rule over the same
events gives the same matches live (the streaming evaluator) and in the warehouse (the SQL of
`partnerwatch rules hunt`), over a simulated week with every attack kind, in the embedded engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import detectors.sigma
from detectors.provider_wide.run import Stage
from detectors.sigma import RuleError
from detectors.sigma.evaluate import SigmaRules, matches
from detectors.sigma.load import load
from detectors.sigma.sql import query
from detectors.sigma.testing import run_tests
from pipeline.config import DetectionConfig, Settings
from pipeline.event import format_ms
from pipeline.ledger import event_of
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import sequence

EXAMPLES = Path(detectors.sigma.__file__).parent / "examples"


def test_ten_example_rules_each_with_its_tests_and_every_case_passes() -> None:
    ruleset = load(EXAMPLES)
    files = sorted(p for p in EXAMPLES.glob("*.yml") if not p.name.endswith(".test.yml"))
    assert len(files) >= 10
    assert {k for c in ruleset.correlations.values() for k in [c.kind]} == {
        "event_count",
        "value_count",
        "temporal_ordered",
    }
    results = run_tests(EXAMPLES, ruleset)
    assert len(results) >= 30 and all(r.expected in (0, 1, 2) for r in results)
    assert [r for r in results if not r.passed] == []
    assert (
        sum(r.expected > 0 for r in results) >= 10 and sum(r.expected == 0 for r in results) >= 10
    )


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


RULE = """title: t
logsource: {product: partnerwatch, service: ledger}
detection:
  s:
    %s
  condition: s
"""


@pytest.mark.parametrize(
    ("selection", "why"),
    [
        ("actor.colour: red", "not a PartnerWatch field"),
        ("'|contains': x", "keyword searches"),
        ("source.ip|cidr: 10.0.0.0/8\n    resource.id|re: '['", "re"),
    ],
)
def test_a_rule_partnerwatch_cannot_run_is_refused_with_the_reason(
    tmp_path: Path, selection: str, why: str
) -> None:
    write(tmp_path, "r.yml", RULE % selection)
    with pytest.raises(RuleError, match=why):
        load(tmp_path)


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    write(
        tmp_path / "a",
        "r.yml",
        (RULE % "action: x").replace("product: partnerwatch", "product: windows"),
    )
    with pytest.raises(RuleError, match="logsource"):
        load(tmp_path / "a")
    write(
        tmp_path / "b",
        "r.yml",
        """title: k
logsource: {product: partnerwatch, service: ledger}
detection:
  keywords: [evil]
  condition: keywords
""",
    )
    with pytest.raises(RuleError, match="keyword"):
        load(tmp_path / "b")
    write(
        tmp_path / "c",
        "r.yml",
        (RULE % "action: x").replace("title: t", "title: t\nname: base")
        + """---
title: c
name: fewer
correlation:
  type: event_count
  rules: [base]
  group-by: [account_id]
  timespan: 1h
  condition: {lt: 3}
""",
    )
    with pytest.raises(RuleError, match="cannot be decided while events stream"):
        load(tmp_path / "c")


@pytest.fixture(scope="module")
def week(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedWarehouse, list[dict[str, Any]]]]:
    """About a week of simulated traffic on six accounts with every attack kind, stored the way
    the loader stores it."""
    stream = [
        e
        for e, _ in generate(
            9000, seed=17, attack_rate=0.01, attack_kinds=ATTACKS, events_per_hour=90
        )
    ]
    entries = sequence(stream)
    warehouse = EmbeddedWarehouse(tmp_path_factory.mktemp("sigma") / "warehouse")
    migrate(warehouse, Settings.from_env({}))
    store_events(warehouse, entries)
    try:
        yield warehouse, entries
    finally:
        warehouse.close()


def test_same_rule_same_events_same_matches_live_and_in_the_warehouse(
    week: tuple[EmbeddedWarehouse, list[dict[str, Any]]],
) -> None:
    warehouse, entries = week
    assert max(e["occurred_at"] for e in entries) >= "2026-11-08"  # a week from 2026-11-02
    ruleset = load(EXAMPLES)
    # In event-time order: the stage folds the ledger merged by event time. (A scene's history
    # from a day before arrives with the scene in the ledger; the live evaluator drops an event
    # later than windows.LATENESS_MS, which the warehouse still counts: see the next test.)
    live = matches(
        ruleset,
        (event_of(e) for e in sorted(entries, key=lambda e: (e["occurred_at"], e["event_id"]))),
    )
    params = {"since": "2020-01-01 00:00:00.000", "until": "2030-01-01 00:00:00.000"}
    stored: set[tuple[Any, ...]] = set()
    for name in ruleset.names:
        rows = warehouse.query(query(name, ruleset), params).rows
        if name in ruleset.correlations:
            stored |= {
                (name, tuple(str(v) for v in row[:-1]), format_ms(int(row[-1]))) for row in rows
            }
        elif ruleset.rules[name].generate:
            stored |= {(name, row[0]) for row in rows}
    assert live == stored
    hit = {m[0] for m in live}
    assert len(hit) >= 8, f"too few rules matched anything to compare: {sorted(hit)}"
    assert {
        "bank_change_then_payout",
        "report_sweep_across_accounts",
        "ip_churn_hour",
        "failed_writes_window",
    } <= hit


def test_live_windows_take_events_an_hour_late_and_no_later() -> None:
    ruleset = load(EXAMPLES)
    hop = ["5.45.207.1", "177.71.200.2", "113.160.10.3", "105.112.4.4", "36.110.1.5", "89.160.20.6"]
    from pipeline.event import normalize

    def login(n: int, at: str) -> dict[str, Any]:
        return normalize(
            {
                "event_id": f"e{n}",
                "occurred_at": at,
                "account_id": "A1",
                "action": "auth.login",
                "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"},
                "source": {"ip": hop[n]},
            }
        )

    early = [login(n, f"2026-11-02T09:0{n}:00Z") for n in range(5)]
    for newest, found in (("2026-11-02T10:30:00Z", True), ("2026-11-02T11:30:00Z", False)):
        late = login(5, "2026-11-02T09:30:00Z")
        later = normalize({**early[0], "event_id": "x", "occurred_at": newest})
        hits = matches(ruleset, [*early, later, late])
        assert any(m[0] == "ip_churn_hour" for m in hits) is found, newest


def test_the_provider_stage_runs_sigma_rules_as_alerts() -> None:
    """Live: the stage folds the Sigma findings into alerts next to its own rules."""
    ruleset = load(EXAMPLES)
    stage = Stage(DetectionConfig(), sigma=SigmaRules(ruleset))
    provider = {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"}
    alerts: dict[str, dict[str, Any]] = {}
    from pipeline.event import normalize

    for i in range(5):
        event = normalize(
            {
                "event_id": f"e{i}",
                "occurred_at": f"2026-11-02T09:0{i}:00Z",
                "account_id": f"A000{i}SELLER",
                "actor": provider,
                "action": "report.download",
                "resource": {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
            }
        )
        for alert in stage.observe(event):
            alerts[alert["alert_id"]] = alert
    sweep = [a for a in alerts.values() if a["detector"] == "sigma_report_sweep_across_accounts"]
    assert len(sweep) == 1 and sweep[0]["evidence_event_ids"] == ["e0", "e1", "e2", "e3", "e4"]
    assert "s|sigma" in stage.states and "s|sigma" in stage.dirty


TEMPORAL = """title: grant
name: grant_given
logsource: {product: partnerwatch, service: ledger}
detection:
  s:
    action: permission.grant
  condition: s
---
title: price
name: price_moved
logsource: {product: partnerwatch, service: ledger}
detection:
  s:
    action: listing.price_change
    actor.type: provider
  condition: s
---
title: a grant and a provider price change on one account in the same hour
name: grant_and_price
correlation:
  type: temporal
  rules: [grant_given, price_moved]
  group-by: [account_id]
  timespan: 1h
"""


def test_temporal_correlation_same_live_and_in_the_warehouse(
    week: tuple[EmbeddedWarehouse, list[dict[str, Any]]], tmp_path: Path
) -> None:
    warehouse, entries = week
    ruleset = load(write(tmp_path, "temporal.yml", TEMPORAL).parent)
    live = matches(
        ruleset,
        (event_of(e) for e in sorted(entries, key=lambda e: (e["occurred_at"], e["event_id"]))),
    )
    params = {"since": "2020-01-01 00:00:00.000", "until": "2030-01-01 00:00:00.000"}
    rows = warehouse.query(query("grant_and_price", ruleset), params).rows
    stored = {("grant_and_price", (str(r[0]),), format_ms(int(r[1]))) for r in rows}
    assert {m for m in live if m[0] == "grant_and_price"} == stored
    assert len(stored) >= 2  # the scenes' re-grants meet price changes in the same hour
