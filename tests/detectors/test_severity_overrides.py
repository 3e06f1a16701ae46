"""A configured severity (`PW_DETECT_SEVERITIES`, the config's `severities`) reaches every detector.

Every detector id is driven by its own fixture (detectors/rules/<id>.json) into findings, once
with the defaults and once per severity level configured for it: the findings must be the same
but for the severity, which must be the configured one. behaviour_anomaly has no fixture (it
needs a trained model): it runs over every fixture's events with a model that flags every hour.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from detectors import MODULES
from detectors.behaviour.features import FEATURES, KINDS, MONOTONE
from detectors.run import new_state, observe
from pipeline.alert import Finding
from pipeline.config import DetectionConfig
from pipeline.contract import SEVERITIES

from .test_cases import CASES_DIR, build_event

MODEL_DETECTOR = "behaviour_anomaly"


class FlagAll:
    """Quacks like `BehaviourModel`: scores every hour early and flags it."""

    name = "flag-all"
    threshold = 0.0
    day = None  # hours only

    def __init__(self) -> None:
        self.early = {kind: tuple(-1.0 for _ in MONOTONE) for kind in KINDS}
        baseline = {f: {"mean": 0.0, "std": 1.0} for f in FEATURES}
        self.meta: dict[str, Any] = {"baseline": {kind: baseline for kind in KINDS}}

    def score(self, vectors: list[list[float]]) -> list[float]:
        return [1.0] * len(vectors)

    def flags(self, vector: list[float], score: float) -> bool:
        return True

    def out_of_range(self, vector: list[float]) -> list[str]:
        return []


def _cases(detector: str) -> list[dict[str, Any]]:
    if detector == MODEL_DETECTOR:
        paths = sorted(CASES_DIR.glob("*.json"))
    else:
        paths = [CASES_DIR / f"{detector}.json"]
    return [c for p in paths for c in orjson.loads(p.read_bytes())["cases"] if c["alert"]]


def _findings(detector: str, config: DetectionConfig) -> list[Finding]:
    model: Any = FlagAll() if detector == MODEL_DETECTOR else None
    found = []
    for case in _cases(detector):
        states: dict[str, Any] = {}
        for n, raw in enumerate(case["events"]):
            event = build_event(raw, case["name"], n)
            state = states.setdefault(event["account_id"], new_state())
            found += [f for f in observe(state, event, config, model) if f.detector == detector]
    return found


def test_every_detector_is_covered() -> None:
    fixtures = {p.stem for p in CASES_DIR.glob("*.json")}
    assert fixtures | {MODEL_DETECTOR} == set(MODULES)


@pytest.mark.parametrize("detector", MODULES)
def test_configured_severity_overrides_the_default(detector: str) -> None:
    default = _findings(detector, DetectionConfig())
    assert default, f"the {detector} fixture raises no finding"
    for level in SEVERITIES:
        found = _findings(detector, DetectionConfig(severities={detector: level}))
        assert {f.severity for f in found} == {level}, f"{detector} ignores its configured {level}"
        assert [replace(f, severity="") for f in found] == [
            replace(f, severity="") for f in default
        ]


def test_an_override_for_one_detector_leaves_the_others_alone() -> None:
    others = [d for d in MODULES if d != "ip_churn"]
    config = DetectionConfig(severities={"ip_churn": "low"})
    for detector in others:
        assert _findings(detector, config) == _findings(detector, DetectionConfig()), detector
