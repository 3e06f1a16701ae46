"""A real embedded warehouse (chDB) seeded with simulated events, sequenced by the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detectors.run import new_state, observe
from pipeline.alert import alert_id, fold
from pipeline.config import DetectionConfig, Settings
from pipeline.event import format_ms, normalize, timestamp_ms
from pipeline.ledger import ChainHead, append, event_of
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate

#: 2026-11-02 06:00:00 UTC, where the simulator's clock starts.
T0 = 1_793_599_200_000
HOUR = 3_600_000


def sequence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger entries for `events`, in order, each ingested 2 s after it occurred (ledger time grows)."""
    heads: dict[str, ChainHead] = {}
    out = []
    clock = 0
    for raw in events:
        event = normalize(raw)
        clock = max(clock + 1, timestamp_ms(event["occurred_at"], "occurred_at") + 2000)
        account = event["account_id"]
        entry, heads[account] = append(heads.get(account, ChainHead()), event, format_ms(clock))
        out.append(entry)
    return out


def simulated_entries(
    count: int, seed: int = 11, accounts: int = 2, **options: Any
) -> list[dict[str, Any]]:
    """Simulated traffic (starting 2026-11-02 06:00 UTC), sequenced."""
    return sequence(
        [e for e, _ in generate(count, seed=seed, accounts=accounts, providers=3, **options)]
    )


def detected_alerts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts the detectors raise on `entries` (latest version of each), as the detect agent folds them."""
    config = DetectionConfig()
    states: dict[str, Any] = {}
    alerts: dict[str, dict[str, Any]] = {}
    for entry in entries:
        event = event_of(entry)
        for finding in observe(states.setdefault(event["account_id"], new_state()), event, config):
            key = alert_id(finding.detector, finding.key, finding.window)
            alerts[key] = fold(alerts.get(key), finding, event, entry["seq"])
    return list(alerts.values())


@pytest.fixture()
def warehouse(tmp_path: Path) -> Iterator[EmbeddedWarehouse]:
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    migrate(wh, Settings.from_env({}))
    try:
        yield wh
    finally:
        wh.close()


@pytest.fixture()
def seeded(warehouse: EmbeddedWarehouse) -> tuple[EmbeddedWarehouse, list[dict[str, Any]]]:
    """1,500 simulated events (with attacks) on 2 accounts and their alerts, stored as the loader stores them."""
    entries = simulated_entries(1500, attack_rate=0.01, attack_kinds=ATTACKS)
    store_events(warehouse, entries)
    store_alerts(warehouse, detected_alerts(entries))
    return warehouse, entries
