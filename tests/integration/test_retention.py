"""Retention: the audit tables' TTL clauses (PW_RETENTION_DAYS) really drop old rows.

On the embedded engine, migrated with a 30-day retention: rows from 100 days ago and from
yesterday go into every table with a TTL (TTL merges held meanwhile, so both are seen stored),
`OPTIMIZE TABLE ... FINAL` merges (which applies the TTL), and only the recent rows are left. Tables with no TTL (chain digests, the migrations table) keep
everything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import Settings
from sinks.clickhouse import EmbeddedWarehouse, migrate

DAYS = 30


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.000")


def test_rows_older_than_the_retention_are_dropped_on_merge(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, retention_days=DAYS)
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        ttl = {
            r[0]: r[1]
            for r in warehouse.query(
                "SELECT name, engine_full FROM system.tables WHERE database = 'audit' AND engine LIKE '%MergeTree'"
            ).rows
        }
        with_ttl = sorted(
            name for name, engine in ttl.items() if f"toIntervalDay({DAYS})" in engine
        )
        assert with_ttl == ["activity_1m", "alert_status", "alerts", "events"], ttl

        # TTL merges held until the rows are in (the engine may drop an expired part right away)
        for table in with_ttl:
            warehouse.execute(f"SYSTEM STOP TTL MERGES audit.{table}")
        now = datetime.now(UTC).replace(microsecond=0)
        old, recent = now - timedelta(days=100), now - timedelta(days=1)
        for n, at in enumerate((old, recent)):
            # activity_1m is fed by its materialized view from audit.events
            warehouse.execute(
                "INSERT INTO audit.events (event_id, account_id, seq, occurred_at, ingested_at, action)"
                " VALUES ({id:String}, 'A1', {seq:UInt64}, {at:DateTime64(3)}, {at:DateTime64(3)}, 'auth.login')",
                {"id": f"ev-{n}", "seq": n + 1, "at": _ts(at)},
            )
            warehouse.execute(
                "INSERT INTO audit.alerts (alert_id, detector, severity, account_id, first_seen, last_seen, count)"
                " VALUES ({id:String}, 'd', 'high', 'A1', {at:DateTime64(3)}, {at:DateTime64(3)}, 1)",
                {"id": f"al-{n}", "at": _ts(at)},
            )
            warehouse.execute(
                "INSERT INTO audit.alert_status (alert_id, account_id, status, actor, at)"
                " VALUES ({id:String}, 'A1', 'acknowledged', 'me', {at:DateTime64(3)})",
                {"id": f"al-{n}", "at": _ts(at)},
            )
        before = {
            t: int(warehouse.query(f"SELECT count() FROM audit.{t}").rows[0][0]) for t in with_ttl
        }
        assert before == dict.fromkeys(with_ttl, 2)

        for table in with_ttl:
            warehouse.execute(f"SYSTEM START TTL MERGES audit.{table}")
            warehouse.execute(f"OPTIMIZE TABLE audit.{table} FINAL")
        kept = {
            "events": "SELECT event_id FROM audit.events",
            "alerts": "SELECT alert_id FROM audit.alerts",
            "alert_status": "SELECT alert_id FROM audit.alert_status",
            "activity_1m": "SELECT toString(minute) FROM audit.activity_1m",
        }
        after = {t: [r[0] for r in warehouse.query(q).rows] for t, q in kept.items()}
        assert after == {
            "events": ["ev-1"],
            "alerts": ["al-1"],
            "alert_status": ["al-1"],
            "activity_1m": [recent.strftime("%Y-%m-%d %H:%M:00")],
        }
        assert (
            int(warehouse.query("SELECT count() FROM audit.schema_migrations").rows[0][0]) >= 5
        )  # no TTL
    finally:
        warehouse.close()
