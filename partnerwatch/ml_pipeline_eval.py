"""`partnerwatch evaluate --ml --pipeline`: the behaviour model judged through the real worker on Kafka.

The labelled behavioural stream (pipeline/simulation/behaviour.py) is split as `detectors.behaviour.evaluation`
splits it; the model is fitted in process on the training window's vectors (the same vectors
`partnerwatch train` builds from the warehouse: tests/ml/test_features.py) and its artifact is
written into the worker's `PW_MODEL_DIR` before the worker starts. Then the whole stream --
history first, so every principal's feature state and baseline are warm -- goes through the
local broker into `partnerwatch worker` (partnerwatch.local_worker: own topics, app id, data dir),
and the alerts are read back from the alerts topic once they settle.

An alert on the topic names no vector key; its id is `sha256(detector|key|window)`
(pipeline/alert.py), so every closed vector's possible behaviour alert id is computed -- hours,
providers' days on an account (the detect agent) and across accounts (the provider-wide stage)
-- and the alerts are matched to (account, key, window): true when that vector holds episode
events. Only alerts of test-window vectors count. Rule alerts on the same stream are counted
beside (the stream injects no rule attack: a rule alert naming an episode event would be a rule
catching the behaviour; any other is a rule false alert).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from detectors.behaviour.evaluation import VECTOR_KINDS, Where, prepare, where_of
from detectors.behaviour.evaluation_stream import alert_vector
from detectors.behaviour.features import HOUR_MS
from detectors.behaviour.training import DEFAULT_TARGET_PER_10K
from detectors.windows import epoch_ms
from pipeline.simulation.behaviour import JUDGED_ON, KINDS

#: Smaller than the in-process evaluation's stream (the worker sequences ~800-1,000 events/s
#: here), yet long enough for a day forest (training) and one multi-day episode (test).
PIPELINE_TRAIN_EVENTS = 90_000
PIPELINE_TEST_EVENTS = 90_000


def run(
    *,
    kafka_sh: Path,
    train_events: int = PIPELINE_TRAIN_EVENTS,
    test_events: int = PIPELINE_TEST_EVENTS,
    seed: int = 11,
    events_per_hour: float = 1800.0,
    episodes: int = 8,
    target_per_10k: float = DEFAULT_TARGET_PER_10K,
    timeout: float = 600.0,
) -> dict[str, Any]:
    from detectors.behaviour.model import save
    from detectors.behaviour.scoring import DETECTOR
    from partnerwatch.local_worker import Namespace, Worker, metric, settled_alerts, wait_for
    from pipeline.alert import alert_id

    started = time.perf_counter()
    p = prepare(
        train_events=train_events,
        test_events=test_events,
        seed=seed,
        events_per_hour=events_per_hour,
        episodes=episodes,
        target_per_10k=target_per_10k,
    )
    prepared_s = time.perf_counter() - started
    roc_auc = _offline_auc(p)
    # every closed test vector's behaviour alert id -> (account, key, window)
    where_of_id: dict[str, Where] = {
        alert_id(DETECTOR, f"{account}|{c.key}", c.window): where_of(account, c)
        for account, c in p.closed
        if p.in_test(c)
    }
    behaviour_events = {e["event_id"] for e, label in p.stream if label is not None}
    hour_of = {e["event_id"]: epoch_ms(e["occurred_at"]) // HOUR_MS for e, _ in p.stream}
    # A fixed command (S603, S607): the packaged Kafka runner's `start`, under the system's bash.
    if subprocess.call(["bash", str(kafka_sh), "start"], stdout=subprocess.DEVNULL) != 0:  # noqa: S603, S607
        raise RuntimeError("could not start the local Kafka broker")
    with tempfile.TemporaryDirectory(prefix="pw-evaluate-ml-") as tmp:
        models = Path(tmp) / "models"
        save(models, p.trained.pipeline, p.trained.meta, p.trained.day_pipeline)
        ns = Namespace(Path(tmp), extra_env={"PW_MODEL_DIR": str(models)})
        worker = Worker(ns).start()
        try:
            wait_for(
                lambda: metric(ns.port, "pw_behaviour_model_loaded") >= 1,
                60,
                "the behaviour model loaded",
            )
            sent_at = time.perf_counter()
            ns.send(event for event, _ in p.stream)
            wait_for(
                lambda: metric(ns.port, "pw_events_accepted_total") >= len(p.stream),
                timeout,
                "all events sequenced",
            )
            pipeline_s = time.perf_counter() - sent_at
            alerts = settled_alerts(ns)
        finally:
            worker.stop()
    ml: list[tuple[dict[str, Any], Where | None]] = []
    rules: dict[str, dict[str, int]] = defaultdict(
        lambda: {"alerts": 0, "naming_behaviour_events": 0}
    )
    for alert in alerts.values():
        evidence = set(alert["evidence_event_ids"])
        if alert["detector"] == DETECTOR:
            where = where_of_id.get(alert["alert_id"])
            if where is not None or not _of_training(alert, hour_of, p.split_hour):
                ml.append((alert, where))
            continue
        if _of_training(alert, hour_of, p.split_hour):
            continue  # a rule alert of the training window
        r = rules[alert["detector"]]
        r["alerts"] += 1
        r["naming_behaviour_events"] += int(bool(evidence & behaviour_events))
    true_windows = {w for _, w in ml if w is not None and w in p.window_kinds}
    test_anomalous = {
        where_of(a, c) for a, c in p.closed if p.in_test(c) and where_of(a, c) in p.window_kinds
    }
    per_vector_kind = {}
    for vkind in VECTOR_KINDS:
        mine = [w for _, w in ml if w is not None and alert_vector(_key(w), w[2])[1] == vkind]
        true = [w for w in mine if w in p.window_kinds]
        anomalous = {w for w in test_anomalous if alert_vector(_key(w), w[2])[1] == vkind}
        per_vector_kind[vkind] = {
            "alerts": len(mine),
            "true_alerts": len(true),
            "precision": len(true) / len(mine) if mine else None,
            "recall": len(set(true)) / len(anomalous) if anomalous else None,
            "anomalous_vectors": len(anomalous),
        }
    per_kind = {}
    for kind in KINDS:
        episodes_of = [e for e, k in p.episode_kind.items() if k == kind]
        # the vectors of the span the kind is judged on (hours, or days for a multi-day kind)
        vectors = {
            w
            for w in test_anomalous
            if kind in p.window_kinds[w] and w[2].endswith("/P1D") == (JUDGED_ON[kind] == "day")
        }
        per_kind[kind] = {
            "episodes": len(episodes_of),
            "episodes_caught": sum(1 for e in episodes_of if p.episode_windows[e] & true_windows),
            "anomalous_vectors": len(vectors),
            "vectors_alerted": len(vectors & true_windows),
        }
    ml_true = sum(1 for _, w in ml if w is not None and w in p.window_kinds)
    unmatched = sum(1 for _, w in ml if w is None)
    return {
        "seed": seed,
        "events": len(p.stream),
        "train_events": p.train_count,
        "test_benign_events": p.test_benign,
        "threshold": float(p.trained.meta["threshold"]),
        "day_forest": p.trained.meta["day_note"],
        "offline_roc_auc": roc_auc,
        "ml_alerts": len(ml),
        "ml_true_alerts": ml_true,
        "ml_false_alerts": len(ml) - ml_true,
        "ml_alerts_unmatched": unmatched,
        "ml_alerts_on_lookalikes": sum(
            1 for _, w in ml if w in p.lookalike_windows and w not in p.window_kinds
        ),
        "ml_precision": ml_true / len(ml) if ml else None,
        "ml_recall_vectors": len(true_windows) / len(test_anomalous) if test_anomalous else None,
        "ml_false_alerts_per_10k_benign": round(
            10_000 * (len(ml) - ml_true) / max(1, p.test_benign), 3
        ),
        "episodes": len(p.episode_windows),
        "episodes_caught": sum(1 for w in p.episode_windows.values() if w & true_windows),
        "episodes_complete": p.complete,
        "per_vector_kind": per_vector_kind,
        "per_kind": per_kind,
        "rules": dict(sorted(rules.items())),
        "rule_alerts_naming_behaviour_events": sum(
            r["naming_behaviour_events"] for r in rules.values()
        ),
        "rule_false_alerts": sum(
            r["alerts"] - r["naming_behaviour_events"] for r in rules.values()
        ),
        "prepare_seconds": round(prepared_s, 1),
        "pipeline_seconds": round(pipeline_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "example_summary": next(
            (a["summary"] for a, w in ml if w is not None and w in p.window_kinds), None
        ),
    }


def _key(where: Where) -> str:
    """The alert key of a vector (account|provider|principal)."""
    return f"{where[0]}|{where[1]}"


def _of_training(alert: dict[str, Any], hour_of: dict[str, int], split_hour: int) -> bool:
    """The alert's evidence all precedes the test window."""
    evidence = alert["evidence_event_ids"]
    return min((hour_of.get(e, split_hour) for e in evidence), default=split_hour) < split_hour


def _offline_auc(p: Any) -> dict[str, float | None]:
    """ROC-AUC of the detector score on this (smaller) stream's test vectors, per vector kind:
    the alerts on the topic carry no score, so this one is computed beside them."""
    from detectors.behaviour.evaluation import auc, score_test

    out: dict[str, float | None] = {}
    for s in score_test(p).values():
        for vkind in sorted(set(s.kinds)):
            pick = [i for i, k in enumerate(s.kinds) if k == vkind]
            out[vkind] = auc([int(bool(s.labels[i])) for i in pick], [s.detector[i] for i in pick])
    return out
