"""Provider-level vectors: the same features over all of a provider's principals on an account.

Built by the same code in batch (training) and event by event (the detector), and scored by the
same model: load spread over several principals, each hour unremarkable alone, is caught on the
provider-level vector, and the alert says so.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from detectors.behaviour.account_features import build
from detectors.behaviour.features import FEATURES, KINDS
from detectors.behaviour.model import BehaviourModel
from detectors.rules.behaviour_anomaly import DETECTOR
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, normalize, timestamp_ms
from tests.ml.conftest import SpyModel, benign

EVENTS = FEATURES.index("events")


def test_provider_vectors_add_up_their_principals_and_batch_equals_incremental(
    spy: SpyModel,
) -> None:
    events = benign(6000, seed=12)
    batch = [(a, c) for a, c in build(iter(events))]
    assert {c.kind for _, c in batch} == set(KINDS)
    # event by event through every detector, as the ingest agent runs them: the same vectors
    states: dict[str, Any] = {}
    for event in events:
        observe(states.setdefault(event["account_id"], new_state()), event, DetectionConfig(), spy)  # type: ignore[arg-type]
    assert sorted(c.vector for _, c in batch) == sorted(spy.scored)
    # a provider-level hour counts every event of the provider's principals in that hour
    principal_events: dict[tuple[str, str, int], float] = defaultdict(float)
    for account, c in batch:
        if c.kind == "principal":
            principal_events[(account, c.key.partition("|")[0], c.hour)] += c.vector[EVENTS]
    provider = [(a, c) for a, c in batch if c.kind == "provider"]
    assert len(provider) > 20
    for account, c in provider:
        assert c.key.endswith("|*") and c.vector[-1] == 1.0
        assert c.vector[EVENTS] == principal_events[(account, c.key.partition("|")[0], c.hour)]
    assert all(c.vector[-1] == 0.0 for _, c in batch if c.kind == "principal")


def _run(events: list[Event], model: BehaviourModel, states: dict[str, Any]) -> list[Finding]:
    config = DetectionConfig()
    return [
        f
        for event in events
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config, model)
        if f.detector == DETECTOR
    ]


def test_load_spread_over_the_principals_is_caught_only_on_the_provider_vector(
    history: list[Event], model: BehaviourModel
) -> None:
    states: dict[str, Any] = {}
    assert len(_run(history, model, states)) <= 0.5 * len(history) / 10_000  # the calibrated budget
    # the account and provider with the most principals in the history
    principals: dict[tuple[str, str], dict[str, Event]] = defaultdict(dict)
    for e in history:
        if e["actor"]["type"] == "provider":
            principals[(e["account_id"], e["actor"]["provider_id"])][e["actor"]["principal_id"]] = e
    (account, provider), last = max(principals.items(), key=lambda kv: (len(kv[1]), kv[0]))
    assert len(last) >= 3
    # an afternoon hour after the history: every principal does its own busiest hour of the
    # history and a quarter of it again, all at once -- each principal's hour stays inside the range
    # of principal hours (scored well below the threshold), the provider's together is not
    start = (
        timestamp_ms(history[-1]["occurred_at"], "t") // 86_400_000 + 1
    ) * 86_400_000 + 14 * 3_600_000
    spread = []
    for p, principal in enumerate(sorted(last)):
        hours: dict[int, list[Event]] = defaultdict(list)
        for e in history:
            if e["account_id"] == account and e["actor"].get("principal_id") == principal:
                hours[timestamp_ms(e["occurred_at"], "t") // 3_600_000].append(e)
        busiest = max(hours.values(), key=len)
        for i, e in enumerate(busiest + busiest[: len(busiest) // 4]):
            at = (
                start
                + (timestamp_ms(e["occurred_at"], "t") + (17_000 if i >= len(busiest) else 0))
                % 3_600_000
            )
            spread.append(dict(e, event_id=f"spread-{p}-{i}", occurred_at=format_ms(at)))
    spread.sort(key=lambda e: e["occurred_at"])
    closer = dict(
        history[-1],
        event_id="spread-closer",
        account_id=account,
        occurred_at=format_ms(start + 3_600_000 + 5_000),
    )
    found = _run([*spread, normalize(closer)], model, copy.deepcopy(states))
    assert not [f for f in found if not f.key.endswith("|*")], (
        "a principal's hour alone was flagged"
    )
    provider_level = [f for f in found if f.key == f"{account}|{provider}|*"]
    assert provider_level, "the spread load was not caught on the provider-level vector"
    f = provider_level[-1]
    assert "provider-level vector" in f.title and "provider-level vector" in f.summary
    assert "events in the hour" in f.summary
    assert set(f.related) & {e["event_id"] for e in spread}


def test_state_kept_under_feature_version_1_does_not_break_scoring(
    history: list[Event], model: BehaviourModel
) -> None:
    """A worker's account state from before provider vectors (15-feature baselines) meets a new model."""
    states: dict[str, Any] = {}
    config = DetectionConfig()
    for event in history[:6000]:
        observe(states.setdefault(event["account_id"], new_state()), event, config, model)
    for state in states.values():
        for b in state["det"][DETECTOR].get("b", {}).values():
            b["mean"], b["m2"] = b["mean"][:-1], b["m2"][:-1]  # as feature version 1 kept them
            b["n"] = 30
    found = _run(history[6000:12000], model, states)
    assert len(found) <= 1
    learned = [b for s in states.values() for b in s["det"][DETECTOR].get("b", {}).values()]
    assert learned and all(len(b["mean"]) == len(FEATURES) for b in learned)
