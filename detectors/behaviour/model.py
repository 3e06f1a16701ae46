"""The behaviour model artifact: writing it, loading it safely, and swapping in newer ones.

An artifact is a directory `behaviour-<created>-<hash>/` under the models directory
(`PW_DATA_DIR/models`) holding `model.skops` (the hour forest: a fitted scikit-learn Pipeline, in
skops' format: no pickle, so loading runs no code), `day.skops` (the day forest, when the training
window held enough days) and `meta.json` (features, FEATURE_VERSION, training window, library
versions, threshold, range margin, data hash, per-feature baseline and range for each kind of
vector -- one principal, or a provider's principals together (detectors/behaviour/features.py)
-- the SHA-256 of `model.skops`, and under `day` the same for the day forest, or null). One
forest scores both kinds of hour (the `provider_level` feature tells them apart), the other both
kinds of day (detectors/behaviour/day_features.py); ranges and early limits are each kind's own.
A vector is flagged when its forest score reaches its forest's threshold, or when a feature lies
beyond its kind's training range by more than `range_margin` training spreads.
Loading checks, in order: the feature version and names (a model fitted on other features is
refused with a clear error), each file's SHA-256 against the metadata (a changed file is
refused), and skops' list of types each file would build against `TRUSTED_TYPES`. Directories are
written under a dot name and renamed into place, so a reader never sees half an artifact.

sklearn and skops are imported only when a model is loaded or written: a worker without a
model never pays for them.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detectors.behaviour import sklearn_internals
from detectors.behaviour.day_features import DAY_FEATURES, DAY_KINDS
from detectors.behaviour.features import FEATURE_VERSION, FEATURES, KINDS, MONOTONE

KIND = "behaviour_anomaly"
MODEL_FILE = "model.skops"
#: The day forest, beside the hour forest (absent when the training window held too few days).
DAY_FILE = "day.skops"
META_FILE = "meta.json"
PREFIX = "behaviour-"
#: Up to this many vectors per call are scored by walking the trees in Python (see `score`).
FAST_BATCH = 16
#: The only types skops may build besides its own defaults (checked before loading).
TRUSTED_TYPES: frozenset[str] = sklearn_internals.TREE_TYPES


class ArtifactError(ValueError):
    """An artifact that must not be used; the message says why and what to do."""


class Forest:
    """One fitted scaled forest, its threshold and each of its kinds' training ranges.

    The behaviour model holds two: hours (detectors/behaviour/features.py) and days
    (detectors/behaviour/day_features.py), each with its own features and threshold.
    """

    def __init__(
        self,
        pipeline: Any,
        threshold: float,
        margin: float,
        baseline: dict[str, dict[str, dict[str, float]]],
        features: tuple[str, ...],
        kinds: tuple[str, ...],
        floors: dict[str, list[float]] | None = None,
        spread_floor: float = 0.0,
    ) -> None:
        self.pipeline = pipeline  # sklearn Pipeline(scale, forest)
        #: Per kind, per feature, the value a vector's feature is raised to before anything else
        #: (one-sided features: a low value is no anomaly); None: none
        self.floors = floors
        self.threshold = threshold
        self.features = features
        self.kinds = kinds
        #: per kind, per feature: the training statistics (min, mean, std, p50, p99, max)
        self.baselines = baseline
        #: Per kind, per feature (low, high) bounds: the kind's training range widened by
        #: `margin` spreads; and the spreads themselves (how far beyond a bound a value lies): the
        #: training standard deviation, at least `spread_floor` x the mean's size (a feature
        #: nearly constant in a short history would otherwise make any change out of range).
        self.bounds: dict[str, tuple[tuple[float, float], ...]] = {}
        self.spreads: dict[str, tuple[float, ...]] = {}
        for kind in kinds:
            stats = baseline[kind]
            self.spreads[kind] = tuple(
                max(stats[f]["std"], spread_floor * abs(stats[f]["mean"]), 1e-6) for f in features
            )
            self.bounds[kind] = tuple(
                (stats[f]["min"] - margin * spread, stats[f]["max"] + margin * spread)
                for f, spread in zip(features, self.spreads[kind], strict=True)
            )
        self._compiled: tuple[Any, ...] | None = None

    def kind(self, vector: list[float]) -> str:
        """The vector's kind: its last feature is the kind indicator (0 or 1)."""
        return self.kinds[1] if vector[-1] >= 0.5 else self.kinds[0]

    def floored(self, vector: list[float]) -> list[float]:
        """The vector as the forest and the range check see it (one-sided features raised to
        their floor)."""
        if self.floors is None:
            return vector
        return [max(v, f) for v, f in zip(vector, self.floors[self.kind(vector)], strict=True)]

    def out_of_range(self, vector: list[float]) -> list[str]:
        """Features of `vector` beyond anything the training window held (by the margin).

        An IsolationForest cannot extrapolate: its splits lie inside the training range, so a
        value far past the largest ever seen scores like that largest value. This check covers it.
        """
        vector = self.floored(vector)
        bounds = self.bounds[self.kind(vector)]
        return [self.features[i] for i, (lo, hi) in enumerate(bounds) if not lo <= vector[i] <= hi]

    def flags(self, vector: list[float], score: float) -> bool:
        return score >= self.threshold or bool(self.out_of_range(vector))

    def detector_score(self, vector: list[float], score: float) -> float:
        """A ranking score that flags exactly as `flags` does: the forest score, or, beyond the
        training range, the threshold plus how far beyond (in training spreads) -- the score
        the evaluation's ROC-AUC ranks by (a range check has no score of its own)."""
        vector = self.floored(vector)
        kind = self.kind(vector)
        outside, beyond = False, 0.0
        for i, (lo, hi) in enumerate(self.bounds[kind]):
            if not lo <= vector[i] <= hi:
                outside = True
                gap = lo - vector[i] if vector[i] < lo else vector[i] - hi
                beyond = max(beyond, gap / self.spreads[kind][i])
        return max(score, self.threshold) + beyond if outside else score

    def score(self, vectors: list[list[float]]) -> list[float]:
        """Anomaly scores (higher = stranger: IsolationForest's `score_samples` negated).

        A few vectors (an account's hours closing together) are scored by walking the compiled
        trees in Python: scikit-learn's own call costs ~15 ms whatever the batch (a dispatch per
        tree), ~30x more than the walk; larger batches go to scikit-learn. Both give the same
        numbers (tests/ml/test_artifact.py).
        """
        import numpy as np

        if self.floors is not None:
            vectors = [self.floored(v) for v in vectors]
        if len(vectors) <= FAST_BATCH:
            return [self._walk(v) for v in vectors]
        return [
            float(-s) for s in self.pipeline.score_samples(np.asarray(vectors, dtype=np.float64))
        ]

    def _walk(self, vector: list[float]) -> float:
        compiled = self._compiled or self._compile()
        center, scale, trees, denominator = compiled
        import numpy as np

        # the scaler's arithmetic in float64, then float32 as the trees compare
        x = np.asarray(
            [(v - c) / s for v, c, s in zip(vector, center, scale, strict=True)], dtype=np.float32
        ).tolist()
        total = 0.0
        for feature, threshold, left, right, value in trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return float(2 ** (-(total / denominator)))

    def _compile(self) -> tuple[Any, ...]:
        """The scaler's parameters and each tree's arrays as plain lists (built once, read-only)."""
        scaler, forest = self.pipeline[0], self.pipeline[-1]
        values, denominator = sklearn_internals.forest_path_lengths(forest)
        trees = []
        for estimator, value in zip(forest.estimators_, values, strict=True):
            t = estimator.tree_
            trees.append(
                (
                    t.feature.tolist(),
                    t.threshold.tolist(),
                    t.children_left.tolist(),
                    t.children_right.tolist(),
                    value,
                )
            )
        self._compiled = (scaler.center_.tolist(), scaler.scale_.tolist(), trees, denominator)
        return self._compiled


class BehaviourModel(Forest):
    """A loaded model: a read-only handle shared by every account's detector state.

    It is the hour forest (the attributes and methods of `Forest`), with the day forest beside
    it in `day` (None: the training window held too few days, and days are not scored).
    """

    def __init__(
        self, name: str, meta: dict[str, Any], pipeline: Any, day_pipeline: Any = None
    ) -> None:
        margin = float(meta["range_margin"])
        super().__init__(
            pipeline, float(meta["threshold"]), margin, meta["baseline"], FEATURES, KINDS
        )
        self.name = name
        self.meta = meta
        #: Per kind of vector, raw-count limits of the monotone features: a partial hour past one
        #: is scored early.
        self.early: dict[str, tuple[float, ...]] = {
            kind: tuple(float(meta["early_limits"][kind][f]) for f in MONOTONE) for kind in KINDS
        }
        day = meta.get("day")
        self.day: Forest | None = None
        if day is not None and day_pipeline is not None:
            self.day = Forest(
                day_pipeline,
                float(day["threshold"]),
                float(day["range_margin"]),
                day["baseline"],
                DAY_FEATURES,
                DAY_KINDS,
                {
                    kind: [-math.inf if f is None else float(f) for f in floors]
                    for kind, floors in day["floors"].items()
                },
                float(day["spread_floor"]),
            )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(models_dir: Path, pipeline: Any, meta: dict[str, Any], day_pipeline: Any = None) -> Path:
    """Write an artifact atomically; return its directory. `meta` gets the model files' hashes
    (the day forest's under `day`, when there is one)."""
    import skops.io as sio

    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = meta["created_at"].replace("-", "").replace(":", "").replace(".", "")[:15]
    tmp = models_dir / f".tmp-{os.getpid()}-{stamp}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sio.dump(pipeline, tmp / MODEL_FILE)
    meta = {**meta, "kind": KIND, "artifact_sha256": file_sha256(tmp / MODEL_FILE)}
    if day_pipeline is not None and meta.get("day") is not None:
        sio.dump(day_pipeline, tmp / DAY_FILE)
        meta["day"] = {**meta["day"], "artifact_sha256": file_sha256(tmp / DAY_FILE)}
    else:
        meta["day"] = None
    (tmp / META_FILE).write_bytes(
        orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    final = models_dir / f"{PREFIX}{stamp}-{meta['artifact_sha256'][:8]}"
    os.rename(tmp, final)
    return final


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = orjson.loads((path / META_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ArtifactError(f"{path.name}: no readable {META_FILE} ({exc})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise ArtifactError(f"{path.name}: not a {KIND} artifact")
    return meta


def load(path: Path) -> BehaviourModel:
    """Load and verify an artifact directory; raise ArtifactError naming what is wrong."""
    meta = read_meta(path)
    version = meta.get("feature_version")
    if version != FEATURE_VERSION or list(meta.get("features", ())) != list(FEATURES):
        raise ArtifactError(
            f"{path.name} was trained on feature version {version}; this code computes feature"
            f" version {FEATURE_VERSION}: retrain with `partnerwatch train`"
        )
    day = meta.get("day")
    if day is not None and list(day.get("features", ())) != list(DAY_FEATURES):
        raise ArtifactError(
            f"{path.name}: its day features are not this code's (feature version"
            f" {FEATURE_VERSION}): retrain with `partnerwatch train`"
        )
    pipeline = _load_forest(path, MODEL_FILE, meta.get("artifact_sha256"))
    day_pipeline = None if day is None else _load_forest(path, DAY_FILE, day.get("artifact_sha256"))
    return BehaviourModel(path.name, meta, pipeline, day_pipeline)


def _load_forest(path: Path, name: str, sha256: Any) -> Any:
    """One forest file of the artifact, after its hash and the types it would build are checked."""
    model_file = path / name
    if not model_file.is_file():
        raise ArtifactError(f"{path.name}: {name} is missing")
    if file_sha256(model_file) != sha256:
        raise ArtifactError(
            f"{path.name}: {name} does not match the SHA-256 in {META_FILE}; refusing to load it"
        )
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=model_file))
    unexpected = untrusted - TRUSTED_TYPES
    if unexpected:
        raise ArtifactError(f"{path.name}: {name} would build untrusted types {sorted(unexpected)}")
    try:
        return sio.load(model_file, trusted=sorted(untrusted))
    except Exception as exc:  # a corrupt file: skops raises many kinds
        raise ArtifactError(f"{path.name}: cannot load {name}: {exc}") from None


def candidates(models_dir: Path) -> list[Path]:
    """Artifact directories, newest first (their names start with the UTC creation time)."""
    if not models_dir.is_dir():
        return []
    return sorted(
        (p for p in models_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True
    )


@dataclass
class ModelSlot:
    """The model in force for one worker, and what to say about it (log line and metric).

    `reload()` swaps in the newest valid artifact when there is one newer than the current;
    a refused artifact is remembered, so it is reported once and not re-read on every check.
    """

    models_dir: Path
    model: BehaviourModel | None = None
    status: str = "idle"
    message: str = ""
    refused: dict[str, str] = field(default_factory=dict)

    def reload(self) -> bool:
        """Check the directory; True when there is something new to say (log it, update the metric)."""
        changed = False
        for path in candidates(self.models_dir):
            if self.model is not None and path.name <= self.model.name:
                break  # nothing newer than what is loaded
            if path.name in self.refused:
                continue
            try:
                model = load(path)
            except ArtifactError as exc:
                self.refused[path.name] = str(exc)
                self.message, changed = f"behaviour model refused: {exc}", True
                continue
            self.model, self.status = model, "loaded"
            self.message = f"behaviour model {path.name} loaded (threshold {model.threshold:.4f})"
            return True
        if self.model is None and not changed and not self.message:
            self.message = (
                f"no behaviour model in {self.models_dir}: behaviour_anomaly stays idle until"
                " `partnerwatch train` writes one"
            )
            return True
        return changed
