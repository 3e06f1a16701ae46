"""Behavioural episodes: the benign stream is untouched, every kind is injected, no rule fires."""

from __future__ import annotations

from collections import Counter
from typing import Any

from detectors.provider_wide.run import Stage
from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from pipeline.event import normalize
from pipeline.simulation.behaviour import (
    KINDS,
    LABEL_PREFIX,
    LOOKALIKE_PREFIX,
    LOOKALIKES,
    ROTATION,
    generate,
)
from pipeline.simulation.traffic import generate as benign_generate


def test_episodes_leave_the_benign_stream_as_it_was_and_no_rule_names_them() -> None:
    stream = list(
        generate(
            40_000, seed=4, anomalies_after=1_000, episodes=len(ROTATION), events_per_hour=1800
        )
    )
    benign = [e for e, label in stream if label is None]
    assert benign == [
        e for e, _ in benign_generate(40_000, seed=4, attack_kinds=(), events_per_hour=1800)
    ]
    labels = Counter(label for _, label in stream if label is not None)
    assert set(labels) == {LABEL_PREFIX + k for k in KINDS} | {
        LOOKALIKE_PREFIX + k for k in LOOKALIKES
    }
    times = [e["occurred_at"] for e, _ in stream]
    assert times == sorted(times)  # one stream in event-time order
    episode_ids = {e["event_id"] for e, label in stream if label is not None}
    config = DetectionConfig()
    states: dict[str, Any] = {}
    stage = Stage(config)
    fired = []
    for raw, _ in stream:
        event = normalize(raw)
        found = observe(states.setdefault(event["account_id"], new_state()), event, config)
        for f in [*found, *stage.findings(event)]:
            fired.append((f.detector, event["event_id"]))
    # the approved sale cuts prices by 35-45%, past the grants' 30%: its approval covers them
    assert not fired, f"rules fired: {Counter(d for d, _ in fired)}"
    assert len(episode_ids) > 100


def test_a_multi_day_erosion_spreads_small_cuts_over_the_providers_principals_and_three_days() -> (
    None
):
    stream = list(
        generate(
            30_000,
            seed=6,
            anomalies_after=1_000,
            episodes=1,
            kinds=("multi_day_erosion",),
            events_per_hour=1800,
        )
    )
    erosion = [normalize(e) for e, label in stream if label == LABEL_PREFIX + "multi_day_erosion"]
    days = Counter(e["occurred_at"][:10] for e in erosion)
    assert len(days) == 3 and min(days.values()) >= 100  # three days, ~120 cuts each
    assert len({e["actor"]["principal_id"] for e in erosion}) >= 2
    assert len({(e["account_id"], e["actor"]["provider_id"]) for e in erosion}) == 1
    for e in erosion:
        change = e["changes"][0]
        cut = 1 - float(change["new"]) / float(change["old"])
        assert e["action"] == "listing.price_change" and 0.015 < cut <= 0.085
    hours = Counter((e["actor"]["principal_id"], e["occurred_at"][:13]) for e in erosion)
    assert max(hours.values()) <= 10  # a few cuts an hour for each principal
