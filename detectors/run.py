"""Run every detector over one account's events: the single place where detection happens.

Used by the detect agent (streams/detect.py), by the fixture-case tests, and by replays, so the
three cannot disagree. `state` is the account's JSON-serializable state
(`{"auth": ..., "det": {detector: its state}}`); `observe` changes it in place.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from detectors import ALL, Context
from pipeline import authorization
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel


def new_state() -> dict[str, Any]:
    return {"auth": authorization.empty(), "det": {}}


def observe(
    state: dict[str, Any],
    event: Event,
    config: DetectionConfig,
    model: BehaviourModel | None = None,
    timings: dict[str, float] | None = None,
) -> list[Finding]:
    """Fold `event` into the account's state and return what the detectors found.

    With `timings`, each detector's time on this event (seconds) is added under its name: the
    detect agent times a sample of events for its metrics, so the hot path stays untimed.

    `model`: the behaviour model in force (detectors/behaviour/model.py), None before training.
    """
    if event["action"] in authorization.AUTHORIZATION_ACTIONS:
        authorization.apply(state["auth"], event)
    ctx = Context(auth=state["auth"], config=config, model=model)
    findings: list[Finding] = []
    detector_state = state["det"]
    for name, detector in ALL:
        own = detector_state.setdefault(name, {})
        if timings is None:
            findings.extend(detector(event, own, ctx))
        else:
            started = perf_counter()
            findings.extend(detector(event, own, ctx))
            timings[name] = timings.get(name, 0.0) + perf_counter() - started
        if not own:
            del detector_state[name]
    return findings
