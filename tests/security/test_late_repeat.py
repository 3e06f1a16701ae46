"""Issue 15, finding 16: an event_id repeated after the dedup window must not leave a seq gap.

What a late repeat is (decided here, docs/contract.md already says "after the window a repeat is a
new event"): a new ledger entry with the next seq, stored in audit.events as a row of its own.
audit.events holds one row per ledger entry, keyed by (account_id, seq): `count()` counts entries
(= pw_events_accepted_total), `uniqExact(event_id)` counts distinct events, and a repeat inside the
window is dropped (pw_events_duplicate_total) and never stored.

The integration test runs the real worker with a dedup window of two seconds
(`PW_DEDUP_WINDOW_DAYS` takes fractions).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from partnerwatch.local_worker import Namespace, Worker, metric, wait_for
from pipeline.config import Settings
from pipeline.event import normalize
from pipeline.forensics.chain_check import verify_range
from pipeline.ledger import LedgerState
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate

WINDOW_MS = 2_000
ACCOUNT = "A0042SELLER"


def event(event_id: str, minute: int) -> dict[str, Any]:
    """A ProviderAction as a gateway sends it."""
    return {
        "event_id": event_id,
        "occurred_at": f"2026-11-02T07:{minute:02d}:00Z",
        "account_id": ACCOUNT,
        "action": "listing.update",
        "marketplace": "DE",
        "actor": {"type": "provider", "provider_id": "PLISTER", "principal_id": "svc-lister"},
        "resource": {"type": "listing", "id": f"sku-{minute}"},
        "changes": [{"field": "title", "old": "a", "new": "b"}],
    }


class WorkerReader:
    """verify_range's reader over the worker's POST /v1/sql."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        class Result:
            rows = self.ns.sql(sql, params)

        return Result()


def stamp(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def test_the_window_setting_takes_fractions_of_a_day() -> None:
    days = WINDOW_MS / 86_400_000
    assert Settings.from_env({"PW_DEDUP_WINDOW_DAYS": repr(days)}).dedup_window_days == days
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="PW_DEDUP_WINDOW_DAYS"):
            Settings.from_env({"PW_DEDUP_WINDOW_DAYS": bad})


def test_a_short_window_remembers_an_id_at_least_the_window_and_at_most_twice_it() -> None:
    state = LedgerState(WINDOW_MS / 86_400_000)
    start = 1_793_606_400_123  # 2026-11-02T08:00:00.123Z, 123 ms into a 2 s bucket
    first = state.accept(event("e-1", 0), stamp(start))
    assert first is not None and first["seq"] == 1
    assert state.accept(event("e-1", 0), stamp(start + WINDOW_MS - 1)) is None  # inside the window
    late = state.accept(event("e-1", 0), stamp(start + 2 * WINDOW_MS))  # past window + one bucket
    assert late is not None and late["seq"] == 2 and late["prev_hash"] == first["hash"]
    assert (
        state.accept(event("e-1", 0), stamp(start + 2 * WINDOW_MS + 1)) is None
    )  # the repeat is remembered


def test_the_warehouse_stores_what_the_ledger_sequenced_late_repeats_included(
    tmp_path: Path,
) -> None:
    """Whole-day window (the default unit), no worker: sequence, store as the loader does, merge."""
    state = LedgerState(1)
    entries = [
        state.accept(normalize(event("a-1", 1)), "2026-11-02T07:01:00.000Z"),
        state.accept(normalize(event("b-2", 2)), "2026-11-02T07:02:00.000Z"),
        state.accept(
            normalize(event("b-2", 2)), "2026-11-02T07:02:00.500Z"
        ),  # inside the window: dropped
        state.accept(
            normalize(event("a-1", 1)), "2026-11-05T07:01:00.000Z"
        ),  # three days later: a new entry
        state.accept(normalize(event("c-3", 3)), "2026-11-05T07:03:00.000Z"),
    ]
    assert [e and e["seq"] for e in entries] == [1, 2, None, 3, 4]
    stored = [e for e in entries if e]
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    try:
        migrate(wh, Settings.from_env({}))
        assert store_events(wh, stored[:3]) == 3
        assert store_events(wh, stored) == 1  # redelivery: entries already stored are skipped
        wh.execute("OPTIMIZE TABLE audit.events FINAL")  # merges must not collapse the late repeat
        rows = wh.query("SELECT event_id, seq FROM audit.events ORDER BY seq").rows
        assert [(e, int(s)) for e, s in rows] == [("a-1", 1), ("b-2", 2), ("a-1", 3), ("c-3", 4)]
        assert int(wh.query("SELECT uniqExact(event_id) FROM audit.events").rows[0][0]) == 3
        report = verify_range(wh, ACCOUNT)
        assert (report.broken, report.events) == (None, 4)
    finally:
        wh.close()


@pytest.mark.integration
def test_a_late_repeat_is_a_new_entry_in_the_ledger_and_the_warehouse(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_DEDUP_WINDOW_DAYS": repr(WINDOW_MS / 86_400_000)})
    worker = Worker(ns).start()
    try:
        # b-2 twice in one send: the second is milliseconds later, inside the window, dropped.
        ns.send([event("a-1", 1), event("b-2", 2), event("b-2", 2)])
        wait_for(
            lambda: int(ns.scalar("SELECT count() FROM audit.events")) >= 2,
            120,
            "a-1 and b-2 stored",
        )
        wait_for(
            lambda: metric(ns.port, "pw_events_duplicate_total") >= 1,
            60,
            "the repeat inside the window dropped",
        )
        ingested = int(
            ns.scalar(
                "SELECT toUnixTimestamp64Milli(ingested_at) FROM audit.events WHERE event_id = 'a-1'"
            )
        )
        # The worker forgets a-1 at most two windows after it sequenced it (window + one bucket).
        wait_for(
            lambda: time.time() * 1000 > ingested + 2 * WINDOW_MS + 50,
            30,
            "the dedup window to pass",
            0.05,
        )

        ns.send([event("a-1", 1), event("c-3", 3)])  # a-1 again, late; c-3 comes after it
        wait_for(
            lambda: int(ns.scalar("SELECT count() FROM audit.events WHERE event_id = 'c-3'")) >= 1,
            120,
            "c-3 stored",
        )
        rows = ns.sql(
            "SELECT event_id, seq FROM audit.events WHERE account_id = {a:String} ORDER BY seq",
            {"a": ACCOUNT},
        )
        assert [(e, int(s)) for e, s in rows] == [("a-1", 1), ("b-2", 2), ("a-1", 3), ("c-3", 4)]
        assert int(ns.scalar("SELECT uniqExact(event_id) FROM audit.events")) == 3
        assert metric(ns.port, "pw_events_accepted_total") == 4
        assert metric(ns.port, "pw_events_duplicate_total") == 1
        report = verify_range(WorkerReader(ns), ACCOUNT)
        assert (report.broken, report.events, report.last_seq) == (None, 4, 4)
    finally:
        worker.stop()

    # The table keeps both rows of a-1 when its parts merge (ReplacingMergeTree keys rows by entry).
    wh = EmbeddedWarehouse(ns.settings.warehouse_path)
    try:
        wh.execute("OPTIMIZE TABLE audit.events FINAL")
        assert [
            int(s)
            for (s,) in wh.query(
                "SELECT seq FROM audit.events WHERE event_id = 'a-1' ORDER BY seq"
            ).rows
        ] == [1, 3]
        report = verify_range(wh, ACCOUNT)
        assert (report.broken, report.events) == (None, 4)
    finally:
        wh.close()
