"""Behavioural episodes: the benign stream is untouched, every kind is injected, no rule fires."""

from __future__ import annotations

from collections import Counter
from typing import Any

from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from pipeline.event import normalize
from pipeline.simulation.behaviour import KINDS, LABEL_PREFIX, generate
from pipeline.simulation.traffic import generate as benign_generate


def test_episodes_leave_the_benign_stream_as_it_was_and_no_rule_names_them() -> None:
    stream = list(generate(40_000, seed=4, anomalies_after=1_000, episodes=4, events_per_hour=1800))
    benign = [e for e, label in stream if label is None]
    assert benign == [
        e for e, _ in benign_generate(40_000, seed=4, attack_kinds=(), events_per_hour=1800)
    ]
    labels = Counter(label for _, label in stream if label is not None)
    assert set(labels) == {LABEL_PREFIX + k for k in KINDS}
    times = [e["occurred_at"] for e, _ in stream]
    assert times == sorted(times)  # one stream in event-time order
    episode_ids = {e["event_id"] for e, label in stream if label is not None}
    config = DetectionConfig()
    states: dict[str, Any] = {}
    fired = []
    for raw, _ in stream:
        event = normalize(raw)
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config):
            fired.append((f.detector, event["event_id"]))
    assert not fired, f"rules fired: {Counter(d for d, _ in fired)}"
    assert len(episode_ids) > 100
