"""Every detector's fixture cases, true positives and benign lookalikes side by side.

Each rule's fixture sits beside it, detectors/rules/<detector id>.json (account rules) or
detectors/provider_wide/rules/<detector id>.json (provider-wide rules):

    {"detector": "<detector id>", "cases": [
      {"name": "...", "alert": true | false, "events": [<event>, ...]}, ...]}

Events are ProviderAction documents; missing `event_id`, `account_id` and `actor` get defaults
(`<case>-<n>`, `A0001SELLER`, the seller). The events of a case run in order through
`detectors.run.observe` (per account, exactly as the detect agent runs them) or, for a
provider-wide rule, through `detectors.provider_wide.run.Stage` (as the provider stage runs it). `alert: true` means the detector
fires on the case's LAST event; `alert: false` means it fires on none of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors import rules
from detectors.provider_wide import MODULES as PROVIDER_WIDE
from detectors.provider_wide import rules as provider_rules
from detectors.provider_wide.run import Stage
from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from pipeline.event import normalize

CASES_DIR = Path(rules.__file__).parent
PROVIDER_CASES_DIR = Path(provider_rules.__file__).parent


def case_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.json")) + sorted(PROVIDER_CASES_DIR.glob("*.json"))


def load_cases() -> list[Any]:
    params = []
    for path in case_files():
        doc = orjson.loads(path.read_bytes())
        for case in doc["cases"]:
            slug = re.sub(r"[^a-z0-9]+", "-", case["name"].lower()).strip("-")
            params.append(pytest.param(doc["detector"], case, id=f"{path.stem}:{slug}"))
    return params


def build_event(raw: dict[str, Any], case: str, n: int) -> dict[str, Any]:
    doc = {
        "event_id": f"{case[:60]}-{n}",
        "account_id": "A0001SELLER",
        "actor": {"type": "seller", "principal_id": "A0001SELLER-owner"},
        **raw,
    }
    doc["event_id"] = re.sub(r"[^A-Za-z0-9._:-]", "-", doc["event_id"])
    return normalize(doc)


@pytest.mark.parametrize(("detector", "case"), load_cases())
def test_case(detector: str, case: dict[str, Any]) -> None:
    config = DetectionConfig()
    states: dict[str, dict[str, Any]] = {}
    stage = Stage(config)
    fired_on = []
    events = [build_event(raw, case["name"], n) for n, raw in enumerate(case["events"])]
    for n, event in enumerate(events):
        if detector in PROVIDER_WIDE:
            found = stage.findings(event)
        else:
            found = observe(states.setdefault(event["account_id"], new_state()), event, config)
        if any(f.detector == detector for f in found):
            fired_on.append(n)
    if case["alert"]:
        assert fired_on and fired_on[-1] == len(events) - 1, (
            f"{detector} did not fire on the last event: {fired_on}"
        )
    else:
        assert not fired_on, f"{detector} fired on benign events {fired_on}"


def test_every_case_file_has_three_alerts_and_three_lookalikes() -> None:
    for path in case_files():
        cases = orjson.loads(path.read_bytes())["cases"]
        assert sum(c["alert"] for c in cases) >= 3, path.name
        assert sum(not c["alert"] for c in cases) >= 3, path.name
