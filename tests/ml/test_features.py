"""One feature code: vectors from warehouse rows (training) equal the detector's (streaming)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectors.behaviour.account_features import AccountFeatures, build
from detectors.behaviour.features import FEATURES, is_off_hours
from detectors.run import new_state, observe
from pipeline.config import DetectionConfig, Settings
from pipeline.event import Event, normalize
from pipeline.ledger import ChainHead, append
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.ml.conftest import SpyModel, benign


def _stored_and_read_back(events: list[Event], tmp_path: Path) -> list[Event]:
    """Sequence `events`, store them as the loader does, read them back as `partnerwatch train` does
    (in pages of 700 rows, so the paging is exercised)."""
    from partnerwatch.ml import warehouse_events

    heads: dict[str, ChainHead] = {}
    entries = []
    for event in events:
        entry, heads[event["account_id"]] = append(
            heads.get(event["account_id"], ChainHead()), event, event["occurred_at"]
        )
        entries.append(entry)
    warehouse = EmbeddedWarehouse(tmp_path / "warehouse")
    try:
        migrate(warehouse, Settings.from_env({}))
        store_events(warehouse, entries)

        def query(sql: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
            result = warehouse.query(sql, params)
            return result.columns, result.rows

        read = list(
            warehouse_events(
                query, "2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z", page_rows=700
            )
        )
    finally:
        warehouse.close()
    assert len(read) == len(events) and len({e["event_id"] for e in read}) == len(events)
    return read


def test_vectors_from_warehouse_rows_equal_the_streaming_detectors(
    tmp_path: Path, spy: SpyModel
) -> None:
    events = benign(6000, seed=9)
    from_rows = [c.vector for _, c in build(_stored_and_read_back(events, tmp_path))]
    config = DetectionConfig()
    states: dict[str, Any] = {}
    for event in events:  # interleaved accounts, as the detect agent sees them
        observe(states.setdefault(event["account_id"], new_state()), event, config, spy)  # type: ignore[arg-type]
    assert len(from_rows) > 100
    assert sorted(from_rows) == sorted(spy.scored)
    assert all(len(v) == len(FEATURES) for v in from_rows)


def _provider_event(n: int, ts: str, action: str = "listing.update", **extra: Any) -> Event:
    return normalize(
        {
            "event_id": f"e{n}",
            "occurred_at": ts,
            "account_id": "A0001SELLER",
            "action": action,
            "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p-1"},
            "source": {"ip": f"91.64.1.{n % 250 + 1}"},
            "marketplace": "DE",
            "resource": {"type": "listing", "id": f"SKU-{n % 3}"},
            **extra,
        }
    )


def test_an_hour_closes_on_the_first_event_after_it_with_the_counted_features() -> None:
    features = AccountFeatures({})
    price = [{"field": "price", "old": "10.00", "new": "8.00"}]
    assert not features.observe(_provider_event(1, "2026-11-02T10:05:00Z"), [])
    assert not features.observe(
        _provider_event(2, "2026-11-02T10:20:00Z", "listing.price_change", changes=price), []
    )
    assert not features.observe(
        _provider_event(
            3,
            "2026-11-02T10:40:00Z",
            "report.download",
            outcome="denied",
            resource={"type": "report", "id": "R"},
        ),
        [],
    )
    closed = features.observe(_provider_event(4, "2026-11-02T11:00:00Z"), [])
    assert [(c.key, c.kind) for c in closed] == [
        ("prov-1|p-1", "principal"),
        ("prov-1|*", "provider"),
    ]
    # one principal: the provider-level vector is the principal's, but for the kind indicator
    assert closed[0].vector[:-1] == closed[1].vector[:-1] and (
        closed[0].vector[-1],
        closed[1].vector[-1],
    ) == (0.0, 1.0)
    v = dict(zip(FEATURES, closed[0].vector, strict=True))
    assert (
        v["events"] == 3
        and v["distinct_skus"] == 2
        and v["distinct_ips"] == 3
        and v["report_downloads"] == 1
    )
    assert v["price_change_max_abs_pct"] == 20.0
    assert (
        v["price_change_mean_abs_pct"] == 20.0 / 4 and v["price_change_mean_pct"] == -20.0 / 4
    )  # 3 pseudo-changes
    assert v["failed_share"] == 1 / 8 and v["off_hours_share"] == 0.0 and v["new_networks"] == 0
    assert closed[0].evidence_for(["price_change_max_abs_pct"])[0] == "e2"


def test_off_hours_follow_the_grants_time_zone_and_office_hours() -> None:
    grant = {
        "grant_id": "g",
        "active_hours": {"tz": "America/New_York", "start": "00:00", "end": "00:00"},
    }
    assert not is_off_hours("2026-11-02T15:00:00Z", [])  # 15:00 UTC, no grant hours: office time
    assert is_off_hours("2026-11-02T03:00:00Z", [])
    assert is_off_hours(
        "2026-11-02T10:00:00Z", [grant]
    )  # 05:00 in New York, inside round-the-clock hours
    assert not is_off_hours("2026-11-02T15:00:00Z", [grant])
    narrow = {"grant_id": "g", "active_hours": {"tz": "UTC", "start": "16:00", "end": "18:00"}}
    assert is_off_hours("2026-11-02T15:00:00Z", [narrow])  # outside the grant's own hours
