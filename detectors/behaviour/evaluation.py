"""Scoring the behaviour model on injected behavioural anomalies, beside the rules.

One labelled stream (pipeline/simulation/behaviour.py): benign history, then a test window with
behavioural episodes. The model is trained on the history's hours (benign only) and judged on
the test window's, two ways:
- offline, on vectors: every closed principal-hour of the test window scored in one batch:
  ROC-AUC of the forest score (overall and per kind); precision and recall of hours flagged as
  the detector flags them (forest score at the threshold, or a feature out of the training
  range), and of the forest alone; episodes with at least one flagged hour; false alerts per
  10,000 benign events;
- streaming, in process: the whole stream through `detectors.run.observe` with the model, as the
  detect agent runs it (every rule plus `behaviour_anomaly`, hours scored on close and early):
  alerts of the test window, true when the alert's principal-hour holds episode events. The
  rules' alerts on the same stream are counted beside: which of them name episode events.

Both kinds of vector are judged: a principal's hour is anomalous when it holds episode events,
and so is its provider's provider-level hour (the episode is part of that aggregate too).
The same stream through the real worker on Kafka is partnerwatch/ml_pipeline_eval.py.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.behaviour.account_features import build
from detectors.behaviour.features import HOUR_MS, Closed, principal_key, provider_key
from detectors.behaviour.features import KINDS as VECTOR_KINDS
from detectors.behaviour.training import DEFAULT_TARGET_PER_10K, fit
from detectors.windows import epoch_ms
from pipeline.event import Event, normalize
from pipeline.simulation.behaviour import KINDS, LABEL_PREFIX
from pipeline.simulation.behaviour import generate as behaviour_generate

_EPISODE = re.compile(r"-bhv(\d+)$")


def _auc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


@dataclass
class Prepared:
    """A labelled stream split into a training window and a test window, and the model fitted on the first."""

    stream: list[tuple[Event, str | None]]
    split_hour: int
    train_count: int
    test_benign: int
    #: (account, vector key, hour) -> episode kind, for principal and provider-level keys
    window_kind: dict[tuple[str, str, int], str]
    episode_hours: dict[str, set[tuple[str, str, int]]]
    episode_kind: dict[str, str]
    closed: list[tuple[str, Closed]]
    trained: Any


def prepare(
    *,
    train_events: int,
    test_events: int,
    seed: int,
    events_per_hour: float,
    episodes: int,
    target_per_10k: float,
) -> Prepared:
    stream: list[tuple[Event, str | None]] = [
        (normalize(e), label)
        for e, label in behaviour_generate(
            train_events + test_events,
            seed=seed,
            events_per_hour=events_per_hour,
            anomalies_after=train_events,
            episodes=episodes,
        )
    ]
    benign_seen = 0
    split_hour = 0
    for event, label in stream:
        if label is None:
            benign_seen += 1
            if benign_seen == train_events:
                split_hour = epoch_ms(event["occurred_at"]) // HOUR_MS + 1
                break
    # (account, principal key, hour) -> kind, and episode -> its hours
    window_kind: dict[tuple[str, str, int], str] = {}
    episode_hours: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    episode_kind: dict[str, str] = {}
    train_count = test_benign = 0
    for event, label in stream:
        hour = epoch_ms(event["occurred_at"]) // HOUR_MS
        if hour < split_hour:
            train_count += 1
        elif label is None:
            test_benign += 1
        if label is not None:
            key = principal_key(event) or ""
            kind = label.removeprefix(LABEL_PREFIX)
            match = _EPISODE.search(event["event_id"])
            episode = match.group(1) if match else event["event_id"]
            for where in (
                (event["account_id"], key, hour),
                (event["account_id"], provider_key(key), hour),
            ):
                window_kind[where] = kind
                episode_hours[episode].add(where)
            episode_kind[episode] = kind
    closed = list(build(e for e, _ in stream))
    train = [c.vector for _, c in closed if c.hour < split_hour]
    trained = fit(train, train_count, target_per_10k=target_per_10k, random_state=seed)
    return Prepared(
        stream,
        split_hour,
        train_count,
        test_benign,
        window_kind,
        episode_hours,
        episode_kind,
        closed,
        trained,
    )


def run(
    *,
    train_events: int = 140_000,
    test_events: int = 80_000,
    seed: int = 11,
    events_per_hour: float = 1800.0,
    episodes: int = 8,
    target_per_10k: float = DEFAULT_TARGET_PER_10K,
    streaming: bool = True,
) -> dict[str, Any]:
    started = time.perf_counter()
    p = prepare(
        train_events=train_events,
        test_events=test_events,
        seed=seed,
        events_per_hour=events_per_hour,
        episodes=episodes,
        target_per_10k=target_per_10k,
    )
    stream, split_hour, train_count, test_benign = (
        p.stream,
        p.split_hour,
        p.train_count,
        p.test_benign,
    )
    window_kind, episode_hours, episode_kind, closed, trained = (
        p.window_kind,
        p.episode_hours,
        p.episode_kind,
        p.closed,
        p.trained,
    )
    train = [c.vector for _, c in closed if c.hour < split_hour]
    threshold = float(trained.meta["threshold"])
    test = [(a, c) for a, c in closed if c.hour >= split_hour]
    scores = [
        -float(s) for s in trained.pipeline.score_samples(_array([c.vector for _, c in test]))
    ]
    kinds = [window_kind.get((a, c.key, c.hour)) for a, c in test]
    labels = [int(k is not None) for k in kinds]
    from detectors.behaviour.model import BehaviourModel

    handle = BehaviourModel("evaluation", trained.meta, trained.pipeline)
    forest_only = [s >= threshold for s in scores]
    flagged = [handle.flags(c.vector, s) for (_, c), s in zip(test, scores, strict=True)]
    forest_tp = sum(1 for f, y in zip(forest_only, labels, strict=True) if f and y)
    forest_fp = sum(1 for f, y in zip(forest_only, labels, strict=True) if f and not y)
    tp = sum(1 for f, y in zip(flagged, labels, strict=True) if f and y)
    fp = sum(1 for f, y in zip(flagged, labels, strict=True) if f and not y)
    flagged_windows = {(a, c.key, c.hour) for (a, c), f in zip(test, flagged, strict=True) if f}
    offline: dict[str, Any] = {
        "train_events": train_count,
        "train_vectors": len(train),
        "test_vectors": len(test),
        "test_anomalous_vectors": sum(labels),
        "test_benign_events": test_benign,
        "threshold": threshold,
        "roc_auc": _auc(labels, scores),
        "forest_only": {
            "precision": forest_tp / (forest_tp + forest_fp) if forest_tp + forest_fp else None,
            "recall": forest_tp / sum(labels) if sum(labels) else None,
            "false_alerts": forest_fp,
            "false_alerts_per_10k_benign": round(10_000 * forest_fp / max(1, test_benign), 3),
        },
        "forest_or_out_of_range": "the figures below",
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / sum(labels) if sum(labels) else None,
        "false_alerts": fp,
        "false_alerts_per_10k_benign": round(10_000 * fp / max(1, test_benign), 3),
        "episodes": len(episode_hours),
        "episodes_caught": sum(1 for hours in episode_hours.values() if hours & flagged_windows),
        "per_kind": {},
        "per_vector_kind": {},
    }
    for vkind in VECTOR_KINDS:
        pick = [i for i, (_, c) in enumerate(test) if c.kind == vkind]
        sub = [labels[i] for i in pick]
        vtp = sum(1 for i in pick if labels[i] and flagged[i])
        vfp = sum(1 for i in pick if flagged[i] and not labels[i])
        offline["per_vector_kind"][vkind] = {
            "vectors": len(pick),
            "anomalous": sum(sub),
            "roc_auc": _auc(sub, [scores[i] for i in pick]),
            "precision": vtp / (vtp + vfp) if vtp + vfp else None,
            "recall": vtp / sum(sub) if sum(sub) else None,
            "false_alerts": vfp,
        }
    for kind in KINDS:
        pick = [i for i, k in enumerate(kinds) if k == kind or k is None]
        sub_labels = [labels[i] for i in pick]
        offline["per_kind"][kind] = {
            "vectors": sum(sub_labels),
            "roc_auc": _auc(sub_labels, [scores[i] for i in pick]),
            "recall": (sum(1 for i in pick if labels[i] and flagged[i]) / sum(sub_labels))
            if sum(sub_labels)
            else None,
            "episodes": sum(1 for e, k in episode_kind.items() if k == kind),
            "episodes_caught": sum(
                1
                for e, k in episode_kind.items()
                if k == kind and episode_hours[e] & flagged_windows
            ),
        }
    report: dict[str, Any] = {
        "seed": seed,
        "events_per_hour": events_per_hour,
        "offline_vectors": offline,
    }
    if streaming:
        report["streaming_in_process"] = _streaming(
            stream, trained, split_hour, window_kind, episode_hours, test_benign
        )
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _array(rows: list[list[float]]) -> Any:
    import numpy as np

    return np.asarray(rows, dtype=np.float64)


def _streaming(
    stream: list[tuple[Event, str | None]],
    trained: Any,
    split_hour: int,
    window_kind: dict[tuple[str, str, int], str],
    episode_hours: dict[str, set[tuple[str, str, int]]],
    test_benign: int,
) -> dict[str, Any]:
    """The stream through every detector with the model loaded from a written artifact."""
    from detectors.behaviour.model import load, save
    from detectors.rules.behaviour_anomaly import DETECTOR
    from detectors.run import new_state, observe
    from pipeline.alert import alert_id
    from pipeline.config import DetectionConfig

    behaviour_events = {e["event_id"] for e, label in stream if label is not None}
    with tempfile.TemporaryDirectory(prefix="pw-ml-eval-") as tmp:
        model = load(save(Path(tmp), trained.pipeline, trained.meta))
    config = DetectionConfig()
    states: dict[str, Any] = {}
    alerts: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for event, _ in stream:
        for f in observe(states.setdefault(event["account_id"], new_state()), event, config, model):
            if epoch_ms(event["occurred_at"]) // HOUR_MS < split_hour:
                continue
            a = alerts.setdefault(
                alert_id(f.detector, f.key, f.window),
                {
                    "detector": f.detector,
                    "key": f.key,
                    "window": f.window,
                    "evidence": set(),
                    "summary": "",
                },
            )
            a["evidence"].update((*f.related, event["event_id"]))
            a["summary"] = f.summary
    seconds = time.perf_counter() - started
    ml = [a for a in alerts.values() if a["detector"] == DETECTOR]
    true_windows = set()
    ml_true = 0
    per_vector_kind = {k: {"alerts": 0, "true_alerts": 0} for k in VECTOR_KINDS}
    for a in ml:
        account, provider, principal = a["key"].split("|", 2)
        where = (account, f"{provider}|{principal}", epoch_ms(a["window"]) // HOUR_MS)
        counts = per_vector_kind["provider" if principal == "*" else "principal"]
        counts["alerts"] += 1
        if where in window_kind:
            ml_true += 1
            counts["true_alerts"] += 1
            true_windows.add(where)
    rules: dict[str, dict[str, int]] = defaultdict(
        lambda: {"alerts": 0, "naming_behaviour_events": 0}
    )
    for a in alerts.values():
        if a["detector"] == DETECTOR:
            continue
        r = rules[a["detector"]]
        r["alerts"] += 1
        r["naming_behaviour_events"] += int(bool(a["evidence"] & behaviour_events))
    return {
        "events": len(stream),
        "detect_seconds": round(seconds, 1),
        "ml_alerts": len(ml),
        "ml_true_alerts": ml_true,
        "ml_false_alerts": len(ml) - ml_true,
        "ml_precision": ml_true / len(ml) if ml else None,
        "ml_false_alerts_per_10k_benign": round(
            10_000 * (len(ml) - ml_true) / max(1, test_benign), 3
        ),
        "ml_per_vector_kind": per_vector_kind,
        "ml_alerts_with_episode_evidence": sum(1 for a in ml if a["evidence"] & behaviour_events),
        "episodes": len(episode_hours),
        "episodes_caught": sum(1 for hours in episode_hours.values() if hours & true_windows),
        "rules": dict(sorted(rules.items())),
        "rule_alerts_naming_behaviour_events": sum(
            r["naming_behaviour_events"] for r in rules.values()
        ),
        "example_summary": next(
            (
                a["summary"]
                for a in ml
                if (
                    a["key"].split("|", 1)[0],
                    a["key"].split("|", 1)[1],
                    epoch_ms(a["window"]) // HOUR_MS,
                )
                in window_kind
            ),
            None,
        ),
    }
