"""Migration 0003: the activity rollup is exact for events loaded before and after it."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings
from pipeline.simulation.traffic import generate
from sinks.audit_store import store_events
from sinks.clickhouse import MIGRATIONS, EmbeddedWarehouse, migrate
from tests.integrity.conftest import sequence

ROLLUP = (
    "SELECT minute, account_id, provider_id, action, outcome, countMerge(events), uniqMerge(principals),"
    " uniqMerge(source_ips) FROM audit.activity_1m GROUP BY ALL ORDER BY ALL"
)
RAW = (
    "SELECT toStartOfMinute(occurred_at) AS minute, account_id, provider_id, action, outcome, count(),"
    " uniqExact(principal_id), uniqExactIf(source_ip, source_ip != '') FROM audit.events GROUP BY ALL ORDER BY ALL"
)


def assert_rollup_exact(wh: EmbeddedWarehouse, events: int) -> None:
    """The rollup answers what audit.events gives, key by key, and counts `events` in all."""
    rollup, raw = wh.query(ROLLUP).rows, wh.query(RAW).rows
    assert len(raw) > 300
    assert rollup == raw
    assert sum(r[5] for r in rollup) == events


def test_rollup_backfills_history_and_follows_new_inserts(tmp_path: Path) -> None:
    entries = sequence(
        [e for e, _ in generate(1200, seed=5, accounts=3, providers=3, attack_rate=0.0)]
    )
    before = tmp_path / "migrations-before-0003"
    before.mkdir()
    for path in MIGRATIONS.iterdir():
        if path.name.endswith(".sql") and int(path.name.split("_")[0]) < 3:
            (before / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert sorted(p.name for p in before.iterdir()) == ["0001_events.sql", "0002_alerts.sql"]
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    try:
        settings = Settings.from_env({})
        migrate(wh, settings, before)
        assert store_events(wh, entries[:700]) == 700  # history from before the rollup existed
        applied = migrate(wh, settings)
        assert "0003_rollups" in applied
        assert store_events(wh, entries[600:]) == 500  # 100 redelivered, skipped by the loader
        store_events(wh, entries[600:])
        assert_rollup_exact(wh, len(entries))
    finally:
        wh.close()


def test_rollup_is_exact_over_raw_batches_left_unmerged(tmp_path: Path) -> None:
    """Over the loader's fast path (`store_raw`, which inserts without merging the block on
    insert), with merges stopped, every batch stays a part of its own in both tables, each record
    is one row of audit.events, and the rollup answers exactly what the events give."""
    from sinks.audit_store import store_raw
    from tests.unit.test_loader_raw import simulated

    raws = simulated(2_400, seed=11)
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    try:
        migrate(wh, Settings.from_env({}))
        wh.execute("SYSTEM STOP MERGES audit.events")
        wh.execute("SYSTEM STOP MERGES audit.activity_1m")
        for start in range(0, len(raws), 600):
            batch = raws[start : start + 600]
            assert store_raw(wh, batch) == len(batch)
        parts = (
            "SELECT count() FROM system.parts WHERE database = 'audit' AND table = {t:String}"
            " AND active"
        )
        assert wh.query(parts, {"t": "events"}).rows == [[4]]
        assert wh.query(parts, {"t": "activity_1m"}).rows == [[4]]
        assert wh.query("SELECT count() FROM audit.events").rows == [[len(raws)]]
        assert_rollup_exact(wh, len(raws))
    finally:
        wh.close()
