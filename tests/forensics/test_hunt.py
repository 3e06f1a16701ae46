"""Retro-hunt on the real embedded warehouse: it finds injected attacks from stored history alone,
reports only findings inside the period, and marks alerts the pipeline already stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from detectors.retro_hunt import history, hunt
from pipeline.config import DetectionConfig, Settings
from pipeline.event import timestamp_ms
from pipeline.forensics.chain_check import parse_when
from pipeline.ledger import event_of
from pipeline.simulation.traffic import generate
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import detected_alerts, sequence

KINDS = (
    "provider_without_grant",
    "listing_out_of_scope",
    "price_change_over_limit",
    "bulk_listing_burst",
)
EVER = (parse_when("2026-01-01"), parse_when("2027-01-01"))


@pytest.fixture(scope="module")
def stored(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedWarehouse, list[dict[str, Any]], dict[str, list[dict[str, Any]]]]]:
    """A stream with four attack kinds; every alert stored except half of provider_without_grant's."""
    stream = list(
        generate(3000, seed=31, accounts=3, providers=4, attack_rate=0.02, attack_kinds=KINDS)
    )
    entries = sequence([e for e, _ in stream])
    injected = [e["event_id"] for e, kind in stream if kind == "provider_without_grant"]
    alerts = detected_alerts(entries)
    by_detector: dict[str, list[dict[str, Any]]] = {}
    for alert in sorted(alerts, key=lambda a: (a["first_seen"], a["alert_id"])):
        by_detector.setdefault(alert["detector"], []).append(alert)
    withheld = by_detector["provider_without_grant"][1::2]
    wh = EmbeddedWarehouse(tmp_path_factory.mktemp("hunt") / "warehouse")
    migrate(wh, Settings.from_env({}))
    store_events(wh, entries)
    store_alerts(wh, [a for a in alerts if a not in withheld])
    assert len(injected) >= 4 and withheld
    try:
        yield (
            wh,
            entries,
            {**by_detector, "withheld": withheld, "injected": [{"event_id": i} for i in injected]},
        )
    finally:
        wh.close()


def _plain(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alert.items() if k != "last_seq"}


def test_hunt_finds_the_injected_attack_and_marks_stored_alerts(stored: Any) -> None:
    wh, entries, alerts = stored
    report = hunt(wh, "provider_without_grant", *EVER, config=DetectionConfig())
    expected = alerts["provider_without_grant"]
    assert [f.alert for f in report.findings] == [
        _plain(a) for a in expected
    ]  # same ids, evidence, counts
    evidence = {e for f in report.findings for e in f.alert["evidence_event_ids"]}
    assert {i["event_id"] for i in alerts["injected"]} <= evidence
    withheld = {a["alert_id"] for a in alerts["withheld"]}
    assert {f.alert["alert_id"] for f in report.findings if f.status == "new"} == withheld
    assert all(f.status == "exists" for f in report.findings if f.alert["alert_id"] not in withheld)
    assert report.events_replayed == len(entries) and len(report.accounts) == len(
        {e["account_id"] for e in entries}
    )


def test_hunt_reports_only_findings_inside_the_period_with_the_whole_past_replayed(
    stored: Any,
) -> None:
    wh, entries, alerts = stored
    # listing_out_of_scope needs the grants, published at the very start: a late period still
    # knows them because each account is replayed from its first event.
    expected = alerts["listing_out_of_scope"]
    assert len(expected) >= 4
    middle = expected[len(expected) // 2]
    start = timestamp_ms(middle["first_seen"], "t")
    end = timestamp_ms(expected[-1]["last_seen"], "t")  # exclusive: the last one is out
    report = hunt(wh, "listing_out_of_scope", start, end, config=DetectionConfig())
    by_time = {e["event_id"]: timestamp_ms(e["occurred_at"], "t") for e in entries}
    inside = [
        a for a in expected if any(start <= by_time[ev] < end for ev in a["evidence_event_ids"])
    ]
    assert middle in inside and expected[-1] not in inside and expected[0] not in inside
    assert [f.alert["alert_id"] for f in report.findings] == [a["alert_id"] for a in inside]
    assert {f.status for f in report.findings} == {"exists"}


def test_hunt_for_one_account(stored: Any) -> None:
    wh, entries, alerts = stored
    account = alerts["price_change_over_limit"][0]["account_id"]
    report = hunt(wh, "price_change_over_limit", *EVER, account=account, config=DetectionConfig())
    assert report.accounts == (account,)
    assert [f.alert["alert_id"] for f in report.findings] == [
        a["alert_id"] for a in alerts["price_change_over_limit"] if a["account_id"] == account
    ]
    assert report.events_replayed == sum(1 for e in entries if e["account_id"] == account)


def test_hunt_refuses_an_unknown_detector_and_an_empty_period(stored: Any) -> None:
    wh, _, _ = stored
    with pytest.raises(
        ValueError, match=r"unknown detector 'nope'; known: .*provider_without_grant"
    ):
        hunt(wh, "nope", *EVER)
    with pytest.raises(ValueError, match="--from must be before --to"):
        hunt(wh, "ip_churn", EVER[1], EVER[0])


def test_history_pages_through_an_account_in_seq_order_up_to_the_end(stored: Any) -> None:
    wh, entries, _ = stored
    account = entries[0]["account_id"]
    mine = [e for e in entries if e["account_id"] == account]
    end = timestamp_ms(mine[len(mine) // 2]["occurred_at"], "t")
    read = list(history(wh, account, end, page=97))
    expected = [
        e
        for e in mine
        if e["seq"] <= max(x["seq"] for x in mine if timestamp_ms(x["occurred_at"], "t") < end)
    ]
    assert len(expected) > 3 * 97
    assert [seq for seq, _ in read] == [e["seq"] for e in expected]
    assert [event for _, event in read] == [
        event_of(e) for e in expected
    ]  # the events the detect agent saw
