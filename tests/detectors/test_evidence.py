"""Alerts name the events they rest on, not only the event that tipped them over.

A missed tax filing is an absence: the only attack-relevant event is the policy that set the
obligation. A bulk burst can be crossed by an ordinary edit after a scripted run: the run's edits
are the evidence. Both would otherwise read as alerts about benign events.
"""

from __future__ import annotations

from typing import Any

from detectors.run import new_state, observe
from pipeline.alert import Finding, fold
from pipeline.config import DetectionConfig
from pipeline.event import normalize
from pipeline.simulation.traffic import generate

PROVIDER = {"type": "provider", "provider_id": "prov-1", "principal_id": "prov-1-ops"}


def run(events: list[dict[str, Any]], detector: str) -> dict[str, Any] | None:
    """Fold every finding of `detector` over `events` into one alert, as the detect agent does."""
    state, alert = new_state(), None
    for n, raw in enumerate(events):
        event = normalize({"account_id": "A0001SELLER", "event_id": f"e{n}", **raw})
        for finding in observe(state, event, DetectionConfig()):
            if finding.detector == detector:
                alert = fold(alert, finding, event, n + 1)
    return alert


def test_fold_names_related_events_first_and_once() -> None:
    finding = Finding("d", "high", "k", "w", "t", "s", (), related=("p1", "p2"))
    event = normalize({
        "event_id": "e9", "occurred_at": "2026-11-02T10:00:00Z", "account_id": "A1",
        "actor": {"type": "seller", "principal_id": "o"}, "action": "auth.login",
    })
    alert = fold(None, finding, event, 1)
    assert alert["evidence_event_ids"] == ["p1", "p2", "e9"]
    later = fold(alert, finding, {**event, "event_id": "e10"}, 2)
    assert later["evidence_event_ids"] == ["p1", "p2", "e9", "e10"]
    assert later["count"] == 2


def test_missed_filing_names_the_policy_that_set_it() -> None:
    seller = {"type": "seller", "principal_id": "owner"}
    alert = run(
        [
            {"occurred_at": "2026-11-20T09:00:00Z", "action": "auth.login", "actor": seller},
            {"occurred_at": "2026-11-21T09:00:00Z", "action": "policy.update", "actor": seller,
             "policy": {"tax_filings": [{"marketplace": "DE", "cadence": "monthly", "due_day": 3}]}},
            {"occurred_at": "2026-11-22T09:00:00Z", "action": "auth.login", "actor": seller},
            {"occurred_at": "2026-12-04T09:00:00Z", "action": "auth.login", "actor": seller},
        ],
        "tax_filing_missed",
    )
    assert alert is not None
    assert alert["evidence_event_ids"] == ["e1", "e3"]
    assert "set by event e1" in alert["summary"]


def edit(at: str, sku: str) -> dict[str, Any]:
    return {"occurred_at": at, "action": "listing.update", "marketplace": "DE", "actor": PROVIDER,
            "resource": {"type": "listing", "id": sku}}


def test_burst_names_the_scripted_edits_before_the_crossing() -> None:
    usual = [edit(f"2026-11-02T0{h}:00:{i:02d}Z", f"SKU-{i}") for h in (6, 7, 8) for i in range(5)]
    burst = [edit(f"2026-11-02T10:{i // 6:02d}:{i % 6 * 10:02d}Z", f"SKU-{100 + i}") for i in range(60)]
    alert = run([*usual, edit("2026-11-02T09:00:00Z", "SKU-1"), *burst], "bulk_listing_burst")
    assert alert is not None
    # threshold max(40, 3 x 5): the burst's 40th edit crosses it; its 19 predecessors come first
    ids = [f"e{len(usual) + 1 + i}" for i in range(60)]
    assert alert["evidence_event_ids"][:20] == ids[20:40]
    assert alert["evidence_event_ids"][20:] == ids[40:]


def test_long_horizon_attacks_are_labelled_only_on_their_evidence() -> None:
    """The detached scenes' history is benign-labelled; only the attack's own events carry the kind."""
    stream = list(generate(6000, seed=3, attack_rate=0.01, attack_kinds=("api_rate_sustained", "tax_filing_missed")))
    kinds: dict[str, int] = {}
    for event, kind in stream:
        if kind is not None:
            assert event["event_id"].rsplit("-", 1)[-1].startswith("atk")
            kinds[kind] = kinds.get(kind, 0) + 1
        else:
            assert "-atk" not in event["event_id"]
    assert kinds.get("tax_filing_missed", 0) >= 1  # one policy event per instance
    assert kinds.get("api_rate_sustained", 0) >= 130  # the burst, not the day of history before it
