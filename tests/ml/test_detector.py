"""The behaviour_anomaly detector: idle without a model, explains what deviates, scores early."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from detectors.behaviour.features import MONOTONE
from detectors.behaviour.model import BehaviourModel
from detectors.rules.behaviour_anomaly import DETECTOR
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, normalize, timestamp_ms


def _run(
    events: list[Event], model: BehaviourModel | None, states: dict[str, Any] | None = None
) -> list[tuple[Event, Finding]]:
    states = {} if states is None else states
    config = DetectionConfig()
    out = []
    for event in events:
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config, model):
            out.append((event, f))
    return out


def _erosion(history: list[Event], start_ms: int) -> list[Event]:
    """One principal of the history cutting 12 prices by 20-24% within an hour (each under the 30% limit)."""
    last = next(e for e in reversed(history) if e["actor"]["type"] == "provider")
    events = []
    for i in range(12):
        old = 100 + i
        events.append(
            normalize(
                {
                    "event_id": f"erosion-{i}",
                    "occurred_at": format_ms(start_ms + i * 240_000),
                    "account_id": last["account_id"],
                    "actor": dict(last["actor"]),
                    "action": "listing.price_change",
                    "marketplace": last.get("marketplace", "DE"),
                    "source": {"ip": last["source"]["ip"]},
                    "resource": {"type": "listing", "id": f"SKU-EROSION-{i}"},
                    "operation": "patchListingsItem",
                    "changes": [
                        {
                            "field": "price",
                            "old": f"{old}.00",
                            "new": f"{old * (76 + i % 5) / 100:.2f}",
                        }
                    ],
                }
            )
        )
    return events


def test_without_a_model_the_detector_is_idle_and_keeps_no_state(history: list[Event]) -> None:
    states: dict[str, Any] = {}
    assert not [f for _, f in _run(history[:3000], None, states) if f.detector == DETECTOR]
    assert all(DETECTOR not in s["det"] for s in states.values())


@pytest.fixture(scope="module")
def warmed(history: list[Event], model: BehaviourModel) -> tuple[dict[str, Any], list[Finding]]:
    """Every account's state after the history (with the model), and the behaviour findings on it."""
    states: dict[str, Any] = {}
    return states, [f for _, f in _run(history, model, states) if f.detector == DETECTOR]


def test_benign_history_raises_no_alert_and_an_eroding_hour_is_explained(
    history: list[Event], model: BehaviourModel, warmed: tuple[dict[str, Any], list[Finding]]
) -> None:
    states, on_history = copy.deepcopy(warmed)
    assert len(on_history) <= 0.5 * len(history) / 10_000  # the calibrated false-alert budget
    start = (timestamp_ms(history[-1]["occurred_at"], "t") // 3_600_000 + 1) * 3_600_000
    erosion = _erosion(history, start + 60_000)
    closer = dict(
        history[-1], event_id="next-hour", occurred_at=format_ms(start + 3_600_000 + 5_000)
    )
    found = [f for _, f in _run([*erosion, closer], model, states) if f.detector == DETECTOR]
    assert found, "the eroding hour was not flagged"
    finding = found[-1]
    assert finding.window == format_ms(start) and finding.severity == "medium"
    assert "price change" in finding.summary and "above" in finding.summary
    assert set(finding.related) & {e["event_id"] for e in erosion}


def test_a_partial_hour_far_out_is_scored_before_it_closes(
    history: list[Event], model: BehaviourModel, warmed: tuple[dict[str, Any], list[Finding]]
) -> None:
    states = copy.deepcopy(warmed[0])
    last = next(e for e in reversed(history) if e["actor"]["type"] == "provider")
    start = (timestamp_ms(history[-1]["occurred_at"], "t") // 3_600_000 + 1) * 3_600_000
    # past the training range of report downloads (by the early factor), the hour is scored early
    passes = int(model.early["principal"][MONOTONE.index("report_downloads")]) + 1
    limit = passes + 5
    burst = [
        normalize(
            {
                "event_id": f"burst-{i}",
                "occurred_at": format_ms(start + i * 1_000),
                "account_id": last["account_id"],
                "actor": dict(last["actor"]),
                "action": "report.download",
                "source": {"ip": last["source"]["ip"]},
                "resource": {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
            }
        )
        for i in range(limit)
    ]
    found = [(e, f) for e, f in _run(burst, model, states) if f.detector == DETECTOR]
    assert (
        found and found[0][0]["event_id"] == f"burst-{passes - 1}"
    )  # the event that passed the limit
    assert len(found) == 1  # scored once, not on every later event of the hour
    assert "so far in the hour" in found[0][1].summary and "report downloads" in found[0][1].summary
