"""The simulator's cross-account and multi-day attacks are caught, in order and with disorder.

Every kind of `partnerwatch evaluate` that the provider-wide stage must catch
is injected among benign traffic and run in process exactly as evaluate replays it: account
rules through `detectors.run.observe`, provider-wide rules through the `Stage`, alerts folded.
Each injected instance must be caught by the detector named like its kind, and no alert may name
only benign events (a scene's history, days of benign work, included). `disordered` is the
arrival model of `evaluate --disorder`.
"""

from __future__ import annotations

import zlib
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


def lagging(
    stream: list[tuple[dict[str, Any], str | None]], minutes: int
) -> list[tuple[dict[str, Any], str | None]]:
    """The order the provider stage may fold a backlog in when ingest runs unevenly: accounts
    fall into four ledger partitions, each kept in its own order, and partition k is folded as if
    k x `minutes` of event time behind the first."""
    keyed = []
    clock: dict[int, int] = {}
    for n, (event, kind) in enumerate(stream):
        part = zlib.crc32(event["account_id"].encode()) % 4
        clock[part] = max(clock.get(part, 0), timestamp_ms(event["occurred_at"], "occurred_at"))
        keyed.append((clock[part] + part * minutes * 60_000, n, event, kind))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(event, kind) for _, _, event, kind in keyed]


def test_new_kinds_are_injected_by_evaluate() -> None:
    assert set(NEW_KINDS) <= set(ATTACKS)


@pytest.mark.parametrize(("disorder", "lag"), [(0, 0), (120, 0), (0, 15)])
@pytest.mark.parametrize("seed", [5, 11])
def test_every_instance_caught_and_no_false_alert(seed: int, disorder: int, lag: int) -> None:
    """In order, with 120 s of arrival disorder, and with the ledger's partitions folded up to
    45 minutes of event time apart (the provider-wide rules' windows tolerate an hour)."""
    stream = list(
        generate(7000, seed=seed, attack_rate=0.004, attack_kinds=NEW_KINDS, events_per_hour=1800)
    )
    if disorder:
        stream = disordered(stream, disorder, seed)
    if lag:
        stream = lagging(stream, lag)
    report = score(((e["event_id"], k) for e, k in stream), replay(stream).values())
    for kind in NEW_KINDS:
        s = report.scores[kind]
        assert s.instances >= 2 and s.caught == s.instances, (kind, s)
    assert report.false_alerts == 0, [
        (d, s.false_alerts) for d, s in report.scores.items() if s.false_alerts
    ]


def test_disorder_delays_each_event_by_at_most_the_bound_and_keeps_authorization_order() -> None:
    stream = list(
        generate(4000, seed=3, attack_rate=0.01, attack_kinds=ATTACKS, events_per_hour=1800)
    )
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
                assert all(
                    position[e["event_id"]] < position[event["event_id"]] for e in events[:n]
                )
                assert all(
                    position[e["event_id"]] > position[event["event_id"]] for e in events[n + 1 :]
                )
