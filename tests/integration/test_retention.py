"""Retention: the audit tables' TTL clauses (PW_RETENTION_DAYS) really drop old rows, counted
from arrival, never from a time a provider claims.

On the embedded engine, migrated with a 30-day retention: rows that arrived 100 days ago and
yesterday go into every table with a TTL (TTL merges held meanwhile, so both are seen stored),
`OPTIMIZE TABLE ... FINAL` merges (which applies the TTL), and only the recent rows are left.
Tables with no TTL (chain digests, the migrations table) keep everything. Then the hostile side:
events and alerts a provider dates 1971 or 2150 (the validator takes 1970-2200) are stored and
survive merges, and one batch spanning 150 months is stored whole.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import Settings
from pipeline.event import normalize
from pipeline.ledger import LedgerState
from sinks.audit_store import store_alerts, store_events
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
                "INSERT INTO audit.alerts (alert_id, detector, severity, account_id, first_seen, last_seen, count, stored_at)"
                " VALUES ({id:String}, 'd', 'high', 'A1', {at:DateTime64(3)}, {at:DateTime64(3)}, 1, {at:DateTime64(3)})",
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


def _event(event_id: str, occurred_at: str) -> dict[str, str | dict[str, str]]:
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "account_id": "A0007SELLER",
        "action": "auth.login",
        "actor": {"type": "provider", "provider_id": "PROGUE", "principal_id": "p-1"},
    }


def test_what_a_provider_dates_far_off_is_kept(tmp_path: Path) -> None:
    """Until migration 0008 the TTL ran on occurred_at / first_seen: these rows vanished as soon
    as their part was written (1971: expired; 2150: past DateTime's 2106, wrapped)."""
    settings = Settings.from_env({}, data_dir=tmp_path, retention_days=DAYS)
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        state = LedgerState(1)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        claimed = {"old": "1971-01-01T00:00:00Z", "future": "2150-06-01T00:00:00Z", "now": now}
        entries = [state.accept(normalize(_event(k, v)), now) for k, v in claimed.items()]
        assert store_events(warehouse, [e for e in entries if e]) == 3
        alerts = [
            {
                "alert_id": f"al-{k}",
                "detector": "d",
                "severity": "high",
                "account_id": "A0007SELLER",
                "title": "t",
                "summary": "s",
                "evidence_event_ids": [k],
                "first_seen": v if v != now else now,
                "last_seen": v,
                "count": 1,
                "response": [],
            }
            for k, v in claimed.items()
        ]
        assert store_alerts(warehouse, alerts) == 3
        for table in ("events", "alerts"):
            warehouse.execute(f"OPTIMIZE TABLE audit.{table} FINAL")
        assert sorted(
            r[0] for r in warehouse.query("SELECT event_id FROM audit.events").rows
        ) == sorted(claimed)
        assert sorted(
            r[0] for r in warehouse.query("SELECT alert_id FROM audit.alerts").rows
        ) == sorted(f"al-{k}" for k in claimed)
    finally:
        warehouse.close()


def test_one_batch_spanning_many_months_is_stored(tmp_path: Path) -> None:
    """Partitions are months of occurred_at: ClickHouse's default limit of 100 partitions per
    insert would fail the loader's whole batch on events a provider spread over the years."""
    settings = Settings.from_env({}, data_dir=tmp_path)
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        state = LedgerState(1)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        entries = [
            state.accept(
                normalize(_event(f"m-{i}", f"{1975 + i // 12}-{i % 12 + 1:02d}-15T00:00:00Z")),
                now,
            )
            for i in range(150)
        ]
        assert store_events(warehouse, [e for e in entries if e]) == 150
        assert warehouse.query(
            "SELECT count(), uniqExact(_partition_id) FROM audit.events"
        ).rows == [[150, 150]]
    finally:
        warehouse.close()
