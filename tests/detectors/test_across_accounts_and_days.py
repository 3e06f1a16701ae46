"""The simulator's cross-account and multi-day attacks are caught, in order and with disorder.

Every kind of `partnerwatch evaluate` that the provider-wide stage or grant_then_abuse must catch
is injected among benign traffic and run in process exactly as evaluate replays it: account
rules through `detectors.run.observe`, provider-wide rules through the `Stage`, alerts folded.
Each injected instance must be caught by the detector named like its kind, and no alert may name
only benign events (a scene's history, days of benign work, included). `disordered` is the
arrival model of `evaluate --disorder`.
"""

from __future__ import annotations

from typing import Any

import pytest

from detectors.provider_wide.run import Stage
from detectors.run import new_state, observe
from pipeline.alert import alert_id, fold
from pipeline.authorization import AUTHORIZATION_ACTIONS
from pipeline.config import DetectionConfig
from pipeline.event import normalize, timestamp_ms
from pipeline.simulation.scoring import score
from pipeline.simulation.traffic import ATTACKS, disordered, generate

NEW_KINDS = (
    "cross_account_spray",
    "cross_account_price_cuts",
    "low_and_slow_exfiltration",
    "dormant_reactivation",
    "grant_then_abuse",
    "concurrent_sessions",
)


def replay(stream: list[tuple[dict[str, Any], str | None]]) -> dict[str, dict[str, Any]]:
    config = DetectionConfig()
    states: dict[str, Any] = {}
    stage = Stage(config)
    alerts: dict[str, dict[str, Any]] = {}
    for raw, _ in stream:
        event = normalize(raw)
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config):
            key = alert_id(f.detector, f.key, f.window)
            alerts[key] = fold(alerts.get(key), f, event)
        for alert in stage.observe(event):
            alerts[alert["alert_id"]] = alert
    return alerts


def test_new_kinds_are_injected_by_evaluate() -> None:
    assert set(NEW_KINDS) <= set(ATTACKS)


@pytest.mark.parametrize("disorder", [0, 120])
@pytest.mark.parametrize("seed", [5, 11])
def test_every_instance_caught_and_no_false_alert(seed: int, disorder: int) -> None:
    stream = list(generate(7000, seed=seed, attack_rate=0.004, attack_kinds=NEW_KINDS, events_per_hour=1800))
    if disorder:
        stream = disordered(stream, disorder, seed)
    report = score(((e["event_id"], k) for e, k in stream), replay(stream).values())
    for kind in NEW_KINDS:
        s = report.scores[kind]
        assert s.instances >= 2 and s.caught == s.instances, (kind, s)
    assert report.false_alerts == 0, [(d, s.false_alerts) for d, s in report.scores.items() if s.false_alerts]


def test_disorder_delays_each_event_by_at_most_the_bound_and_keeps_authorization_order() -> None:
    stream = list(generate(4000, seed=3, attack_rate=0.01, attack_kinds=ATTACKS, events_per_hour=1800))
    shuffled = disordered(stream, 120, 3)
    assert sorted(e["event_id"] for e, _ in shuffled) == sorted(e["event_id"] for e, _ in stream)
    assert shuffled == disordered(stream, 120, 3)  # deterministic for a seed
    position = {e["event_id"]: n for n, (e, _) in enumerate(shuffled)}
    late = 0
    newest = 0
    for event, _ in shuffled:
        at = timestamp_ms(event["occurred_at"], "occurred_at")
        late += at < newest
        newest = max(newest, at)
    assert late > 100  # events really arrive out of event-time order
    by_account: dict[str, list[dict[str, Any]]] = {}
    for event, _ in stream:
        by_account.setdefault(event["account_id"], []).append(event)
    for events in by_account.values():
        for n, event in enumerate(events):
            if event["action"] in AUTHORIZATION_ACTIONS:
                assert all(position[e["event_id"]] < position[event["event_id"]] for e in events[:n])
                assert all(position[e["event_id"]] > position[event["event_id"]] for e in events[n + 1 :])
