"""`evaluate --ml`, streaming in process: the labelled stream through the detectors as the worker
runs them.

Every event goes through `detectors.run.observe` (every account rule plus `behaviour_anomaly`:
hours scored on close and early, each provider's day on the account on close) and through the
provider-wide stage (`detectors.provider_wide.run.Stage`: its rules, and each provider's day
across accounts), with the model loaded from a written artifact. A behaviour alert of the test
window is true when the vector it names (account, key, window) holds episode events; an alert on
a vector holding only benign events -- the approved-sale lookalikes included -- is false. The
rules' alerts of the test window are counted beside: which of them name episode events.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.behaviour.day_features import ALL_ACCOUNTS
from detectors.behaviour.features import HOUR_MS, KINDS
from detectors.windows import epoch_ms
from pipeline.simulation.behaviour import LABEL_PREFIX

if TYPE_CHECKING:
    from detectors.behaviour.evaluation import Prepared, Where


def alert_vector(key: str, window: str) -> tuple[Where, str]:
    """The vector a behaviour finding names, and its kind, from its key and window."""
    account, provider, principal = key.split("|", 2)
    if window.endswith("/P1D"):
        kind = "provider_accounts_day" if account == ALL_ACCOUNTS else "provider_day"
    else:
        kind = KINDS[1] if principal == "*" else KINDS[0]
    return (account, f"{provider}|{principal}", window), kind


def _in_test(window: str, split_hour: int) -> bool:
    start = epoch_ms(window.partition("/")[0]) // HOUR_MS
    if window.endswith("/P1D"):
        return start + 24 > split_hour  # a day that ends in the test window
    return start >= split_hour


def streaming(p: Prepared) -> dict[str, Any]:
    from detectors.behaviour.model import load, save
    from detectors.behaviour.scoring import DETECTOR
    from detectors.provider_wide.run import Stage
    from detectors.run import new_state, observe
    from pipeline.config import DetectionConfig

    behaviour_events = {
        e["event_id"] for e, label in p.stream if label and label.startswith(LABEL_PREFIX)
    }
    with tempfile.TemporaryDirectory(prefix="pw-ml-eval-") as tmp:
        model = load(save(Path(tmp), p.trained.pipeline, p.trained.meta, p.trained.day_pipeline))
    config = DetectionConfig()
    states: dict[str, Any] = {}
    stage = Stage(config, model=model)
    ml: dict[tuple[str, str], dict[str, Any]] = {}
    rules: dict[str, dict[str, int]] = defaultdict(
        lambda: {"alerts": 0, "naming_behaviour_events": 0}
    )
    rule_alerts: dict[tuple[str, str, str], set[str]] = {}
    started = time.perf_counter()
    for event, _ in p.stream:
        state = states.setdefault(event["account_id"], new_state())
        hour = epoch_ms(event["occurred_at"]) // HOUR_MS
        for f in [*observe(state, event, config, model), *stage.findings(event)]:
            if f.detector == DETECTOR:
                if _in_test(f.window, p.split_hour):
                    a = ml.setdefault((f.key, f.window), {"summary": "", "evidence": set()})
                    a["summary"] = f.summary
                    a["evidence"].update((*f.related, event["event_id"]))
            elif hour >= p.split_hour:
                rule_alerts.setdefault((f.detector, f.key, f.window), set()).update(
                    (*f.related, event["event_id"])
                )
    seconds = time.perf_counter() - started
    for (detector, _, _), evidence in rule_alerts.items():
        rules[detector]["alerts"] += 1
        rules[detector]["naming_behaviour_events"] += int(bool(evidence & behaviour_events))
    per_vector_kind: dict[str, dict[str, int]] = {}
    true_windows = set()
    on_lookalikes = 0
    examples: dict[str, str] = {}
    for (key, window), a in ml.items():
        where, vkind = alert_vector(key, window)
        counts = per_vector_kind.setdefault(vkind, {"alerts": 0, "true_alerts": 0})
        counts["alerts"] += 1
        if where in p.window_kinds:
            counts["true_alerts"] += 1
            true_windows.add(where)
            examples.setdefault(vkind, a["summary"])
        elif where in p.lookalike_windows:  # holding approved-sale events, no episode event
            on_lookalikes += 1
    ml_true = sum(v["true_alerts"] for v in per_vector_kind.values())
    false = len(ml) - ml_true
    per_kind = {
        kind: {
            "episodes": sum(1 for k in p.episode_kind.values() if k == kind),
            "episodes_caught": sum(
                1
                for e, k in p.episode_kind.items()
                if k == kind and p.episode_windows[e] & true_windows
            ),
        }
        for kind in sorted(set(p.episode_kind.values()))
    }
    return {
        "events": len(p.stream),
        "detect_seconds": round(seconds, 1),
        "ml_alerts": len(ml),
        "ml_true_alerts": ml_true,
        "ml_false_alerts": false,
        "ml_precision": ml_true / len(ml) if ml else None,
        "ml_false_alerts_per_10k_benign": round(10_000 * false / max(1, p.test_benign), 3),
        "ml_alerts_on_lookalikes": on_lookalikes,
        "ml_per_vector_kind": dict(sorted(per_vector_kind.items())),
        "ml_alerts_with_episode_evidence": sum(
            1 for a in ml.values() if a["evidence"] & behaviour_events
        ),
        "episodes": len(p.episode_windows),
        "episodes_caught": sum(1 for w in p.episode_windows.values() if w & true_windows),
        "per_kind": per_kind,
        "rules": dict(sorted(rules.items())),
        "rule_alerts_naming_behaviour_events": sum(
            r["naming_behaviour_events"] for r in rules.values()
        ),
        "example_summaries": dict(sorted(examples.items())),
    }
