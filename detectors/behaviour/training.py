"""Fitting the behaviour model: vectors -> scaled IsolationForest -> calibrated threshold -> artifact.

The threshold is calibrated on the training window itself, in the unit the acceptance is stated
in: the score above which at most `target_per_10k` hours would have alerted per 10,000 training
events. The training window is assumed to be (mostly) benign history; a handful of strange hours
in it only raise the threshold a little (IsolationForest scores are ranks of isolation depth).
Per-feature baseline statistics of each kind of vector (principal, provider-level) go into the
metadata: the detector explains alerts with them until a principal (or provider) has a baseline
of its own. One threshold serves both kinds, so the budget counts every alert, whatever its kind.

Day vectors (detectors/behaviour/day_features.py) get a forest and a threshold of their own,
calibrated the same way on their own budget (`day_target_per_10k`), when the window holds at
least `MIN_DAY_VECTORS` of each kind; with less history the artifact has no day forest and days
are not scored (`meta["day"]` is null and `day_note` says why).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.behaviour.account_features import build_all
from detectors.behaviour.day_features import DAY_FEATURES, DAY_KINDS, DAY_ONE_SIDED
from detectors.behaviour.features import (
    FEATURE_VERSION,
    FEATURES,
    HOUR,
    HOUR_MS,
    KINDS,
    MONOTONE,
    Closed,
)
from pipeline.event import Event, format_ms

DEFAULT_TARGET_PER_10K = 0.35
#: The day forest's own budget (day vectors above its threshold per 10,000 training events).
DEFAULT_DAY_TARGET_PER_10K = 0.1
DEFAULT_TREES = 200
#: Beyond the training range by this many training standard deviations: flagged as out of range.
RANGE_MARGIN = 1.0
#: The same for days: a day forest trains on a vector per provider and day, few, so their range
#: is a rougher estimate of the tails than the hours'.
DAY_RANGE_MARGIN = 1.5
#: ... and a day feature's spread is at least this share of its mean: a few days of history can
#: hold a feature nearly constant (a ratio to the usual day, neutral until there is one).
DAY_SPREAD_FLOOR = 0.1
#: A partial hour is scored early once a growing count passes the training maximum by this factor.
EARLY_FACTOR = 1.25
#: Fewer day vectors of a kind than this in the window: no day forest (days are not scored).
MIN_DAY_VECTORS = 8


@dataclass
class Trained:
    pipeline: Any
    meta: dict[str, Any]
    #: the day forest, or None (meta["day"] is None then, and `day_note` says why)
    day_pipeline: Any = None


def _forest(x: Any, trees: int, random_state: int) -> Any:
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    pipeline = Pipeline(
        [
            ("scale", RobustScaler(quantile_range=(5.0, 95.0))),
            (
                "forest",
                IsolationForest(
                    n_estimators=trees, max_samples=min(512, len(x)), random_state=random_state
                ),
            ),
        ]
    )
    return pipeline.fit(x)


def _threshold(scores: Any, allowed: int) -> float:
    """Halfway between the last training vector allowed to alert and the first that may not: a
    last-bit difference between scorers (detectors/behaviour/model.py) cannot flip one."""
    import numpy as np

    ranked = np.sort(scores)[::-1]
    if allowed >= len(ranked):
        return float(ranked[-1])
    if allowed == 0:
        return float(ranked[0]) + 1e-9
    return float((ranked[allowed] + ranked[allowed - 1]) / 2)


def _baseline(rows: Any, features: tuple[str, ...]) -> dict[str, dict[str, float]]:
    import numpy as np

    return {
        name: {
            "min": float(rows[:, i].min()),
            "mean": float(rows[:, i].mean()),
            "std": float(rows[:, i].std()),
            "p50": float(np.percentile(rows[:, i], 50)),
            "p99": float(np.percentile(rows[:, i], 99)),
            "max": float(rows[:, i].max()),
        }
        for i, name in enumerate(features)
    }


def fit(
    vectors: list[list[float]],
    events: int,
    *,
    target_per_10k: float = DEFAULT_TARGET_PER_10K,
    random_state: int = 0,
    trees: int = DEFAULT_TREES,
    window: tuple[str, str] = ("", ""),
    day_vectors: list[list[float]] | None = None,
    day_target_per_10k: float = DEFAULT_DAY_TARGET_PER_10K,
) -> Trained:
    """Fit the scaled forest on the hour `vectors` (from `events` events) and calibrate its
    threshold; the same for `day_vectors` when there are enough of each kind."""
    import numpy as np
    import sklearn
    import skops

    if len(vectors) < 10:
        raise ValueError(
            f"only {len(vectors)} closed principal-hours in the window: too little history to train on"
        )
    if any(not any(v[-1] == (kind == "provider") for v in vectors) for kind in KINDS):
        raise ValueError(
            "the window holds no vector of one kind (principal or provider-level): too little history"
        )
    x = np.asarray(vectors, dtype=np.float64)
    started = time.perf_counter()
    pipeline = _forest(x, trees, random_state)
    scores = -pipeline.score_samples(x)
    threshold = _threshold(scores, math.floor(target_per_10k * events / 10_000))
    flagged = int((scores >= threshold).sum())
    baseline: dict[str, dict[str, dict[str, float]]] = {}
    early: dict[str, dict[str, float]] = {}
    flagged_of: dict[str, int] = {}
    for kind in KINDS:
        rows = x[x[:, -1] == float(kind == "provider")]
        flagged_of[kind] = int((scores[x[:, -1] == float(kind == "provider")] >= threshold).sum())
        baseline[kind] = _baseline(rows, FEATURES)
        early[kind] = {name: baseline[kind][name]["max"] * EARLY_FACTOR + 1 for name in MONOTONE}
    meta = {
        "feature_version": FEATURE_VERSION,
        "features": list(FEATURES),
        "window": {"since": window[0], "until": window[1]},
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "numpy_version": np.__version__,
        "params": {
            "scaler": "RobustScaler(5-95)",
            "trees": trees,
            "max_samples": min(512, len(x)),
            "random_state": random_state,
        },
        "threshold": threshold,
        "range_margin": RANGE_MARGIN,
        "target_false_alerts_per_10k_events": target_per_10k,
        "training": {
            "events": events,
            "vectors": len(x),
            "vectors_per_kind": {
                kind: int((x[:, -1] == float(kind == "provider")).sum()) for kind in KINDS
            },
            "flagged_at_threshold": flagged,
            "flagged_per_kind": flagged_of,
            "false_alerts_per_10k_events": round(10_000 * flagged / max(1, events), 4),
            "fit_seconds": round(time.perf_counter() - started, 3),
        },
        "data_sha256": hashlib.sha256(np.round(x, 6).tobytes()).hexdigest(),
        "baseline": baseline,
        "early_limits": early,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z",
    }
    day_pipeline, meta["day"], meta["day_note"] = _fit_days(
        day_vectors or [], events, day_target_per_10k, random_state, trees
    )
    return Trained(pipeline, meta, day_pipeline)


def _fit_days(
    vectors: list[list[float]], events: int, target_per_10k: float, random_state: int, trees: int
) -> tuple[Any, dict[str, Any] | None, str]:
    """The day forest and its metadata, or (None, None, why not)."""
    import numpy as np

    per_kind = {
        kind: sum(1 for v in vectors if (v[-1] >= 0.5) == (i == 1))
        for i, kind in enumerate(DAY_KINDS)
    }
    if min(per_kind.values()) < MIN_DAY_VECTORS:
        return (
            None,
            None,
            f"too few closed days to fit the day forest ({per_kind}; {MIN_DAY_VECTORS} of each"
            " kind needed): days are not scored",
        )
    raw = np.asarray(vectors, dtype=np.float64)
    # one-sided features raised to their kind's training median: a quiet day is no anomaly
    floors: dict[str, list[float]] = {}
    x = raw.copy()
    for i, kind in enumerate(DAY_KINDS):
        mine = raw[:, -1] == float(i)
        medians = np.median(raw[mine], axis=0)
        floors[kind] = [
            float(medians[j]) if name in DAY_ONE_SIDED else -math.inf
            for j, name in enumerate(DAY_FEATURES)
        ]
        x[mine] = np.maximum(raw[mine], np.asarray(floors[kind]))
    pipeline = _forest(x, trees, random_state)
    scores = -pipeline.score_samples(x)
    threshold = _threshold(scores, math.floor(target_per_10k * events / 10_000))
    baseline, flagged_of = {}, {}
    for i, kind in enumerate(DAY_KINDS):
        mine = x[:, -1] == float(i)
        baseline[kind] = _baseline(x[mine], DAY_FEATURES)
        flagged_of[kind] = int((scores[mine] >= threshold).sum())
    flagged = int((scores >= threshold).sum())
    meta = {
        "features": list(DAY_FEATURES),
        "threshold": threshold,
        "range_margin": DAY_RANGE_MARGIN,
        "spread_floor": DAY_SPREAD_FLOOR,
        "floors": {k: [f if math.isfinite(f) else None for f in v] for k, v in floors.items()},
        "target_false_alerts_per_10k_events": target_per_10k,
        "params": {"trees": trees, "max_samples": min(512, len(x)), "random_state": random_state},
        "training": {
            "vectors": len(x),
            "vectors_per_kind": per_kind,
            "flagged_at_threshold": flagged,
            "flagged_per_kind": flagged_of,
            "false_alerts_per_10k_events": round(10_000 * flagged / max(1, events), 4),
        },
        "data_sha256": hashlib.sha256(np.round(raw, 6).tobytes()).hexdigest(),
        "baseline": baseline,
    }
    return pipeline, meta, f"{len(x)} day vectors {per_kind}"


def vectors_of(events: Iterable[Event]) -> tuple[list[Closed], list[Closed], int, str, str]:
    """Closed hours and closed days of a history, the events counted, and the first and last
    event time."""
    count = 0
    first = last = ""

    def counted() -> Iterable[Event]:
        nonlocal count, first, last
        for event in events:
            count += 1
            ts = event["occurred_at"]
            first = ts if not first or ts < first else first
            last = ts if ts > last else last
            yield event

    closed = [c for _, c in build_all(counted())]
    hours = [c for c in closed if c.span == HOUR]
    return hours, [c for c in closed if c.span != HOUR], count, first, last


def train_and_save(
    events: Iterable[Event], models_dir: Path, **options: Any
) -> tuple[Path, Trained]:
    """The whole of `partnerwatch train` after reading: vectors, fit, artifact."""
    from detectors.behaviour.model import save

    hours, days, count, first, last = vectors_of(events)
    trained = fit(
        [c.vector for c in hours],
        count,
        window=(first, last),
        day_vectors=[c.vector for c in days],
        **options,
    )
    path = save(models_dir, trained.pipeline, trained.meta, trained.day_pipeline)
    return path, trained


def hour_start(hour: int) -> str:
    return format_ms(hour * HOUR_MS)
