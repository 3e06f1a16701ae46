"""Run every detector over one account's events: the single place where detection happens.

Used by the detect agent (streams/detect.py), by the fixture-case tests, and by replays, so the
three cannot disagree. `state` is the account's JSON-serializable state
(`{"auth": ..., "det": {detector: its state}}`); `observe` changes it in place.
"""

from __future__ import annotations

from typing import Any

from detectors import ALL, Context
from detectors.config import DetectionConfig
from pipeline import authorization
from pipeline.alert import Finding
from pipeline.event import Event


def new_state() -> dict[str, Any]:
    return {"auth": authorization.empty(), "det": {}}


def observe(state: dict[str, Any], event: Event, config: DetectionConfig) -> list[Finding]:
    """Fold `event` into the account's state and return what the detectors found."""
    if event["action"] in authorization.AUTHORIZATION_ACTIONS:
        authorization.apply(state["auth"], event)
    ctx = Context(auth=state["auth"], config=config)
    findings: list[Finding] = []
    detector_state = state["det"]
    for name, detector in ALL:
        own = detector_state.setdefault(name, {})
        findings.extend(detector(event, own, ctx))
        if not own:
            del detector_state[name]
    return findings
