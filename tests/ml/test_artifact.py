"""Training writes a versioned, verifiable artifact; loading refuses anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
import sklearn

from detectors.behaviour.account_features import build
from detectors.behaviour.features import FEATURE_VERSION, FEATURES, KINDS
from detectors.behaviour.model import (
    META_FILE,
    MODEL_FILE,
    ArtifactError,
    BehaviourModel,
    file_sha256,
    load,
)
from detectors.behaviour.training import fit
from pipeline.event import Event


def _copy(model: BehaviourModel, models_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / model.name
    shutil.copytree(models_dir / model.name, target)
    return target


def test_round_trip_scores_like_the_fitted_pipeline(
    model: BehaviourModel, history: list[Event]
) -> None:
    meta = model.meta
    assert meta["feature_version"] == FEATURE_VERSION and meta["features"] == list(FEATURES)
    assert meta["sklearn_version"] == sklearn.__version__
    assert meta["window"]["since"] < meta["window"]["until"]
    assert len(meta["data_sha256"]) == 64 and meta["created_at"].endswith("Z")
    assert set(meta["baseline"]) == set(KINDS) and all(
        set(b) == set(FEATURES) for b in meta["baseline"].values()
    )
    vectors = [c.vector for _, c in build(iter(history))]
    refit = fit(vectors, len(history), random_state=3, trees=100)
    assert refit.meta["data_sha256"] == meta["data_sha256"]  # same history, same vectors
    assert refit.meta["threshold"] == pytest.approx(model.threshold)
    assert model.score(vectors[:50]) == pytest.approx(
        list(-refit.pipeline.score_samples(np.asarray(vectors[:50])))
    )
    # calibrated: at most target x events / 10,000 training hours at or above the threshold
    flagged = sum(s >= model.threshold for s in model.score(vectors))
    assert flagged <= 0.5 * len(history) / 10_000 + 1e-9


def test_another_feature_version_is_refused_with_a_clear_error(
    model: BehaviourModel, models_dir: Path, tmp_path: Path
) -> None:
    path = _copy(model, models_dir, tmp_path)
    meta = orjson.loads((path / META_FILE).read_bytes())
    meta["feature_version"] = FEATURE_VERSION + 1
    (path / META_FILE).write_bytes(orjson.dumps(meta))
    with pytest.raises(ArtifactError, match=f"feature version {FEATURE_VERSION + 1}.*retrain"):
        load(path)


def test_a_changed_model_file_is_refused_before_loading(
    model: BehaviourModel, models_dir: Path, tmp_path: Path
) -> None:
    path = _copy(model, models_dir, tmp_path)
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256"):
        load(path)


def test_untrusted_types_are_refused_even_with_a_matching_hash(
    model: BehaviourModel, models_dir: Path, tmp_path: Path
) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = _copy(model, models_dir, tmp_path)
    sio.dump(
        FunctionTransformer(shutil.rmtree), path / MODEL_FILE
    )  # a file that would build a callable
    meta = orjson.loads((path / META_FILE).read_bytes())
    meta["artifact_sha256"] = file_sha256(path / MODEL_FILE)
    (path / META_FILE).write_bytes(orjson.dumps(meta))
    with pytest.raises(ArtifactError, match="untrusted types"):
        load(path)


def test_the_tree_walk_for_a_few_vectors_scores_exactly_like_scikit_learn(
    model: BehaviourModel, history: list[Event]
) -> None:
    vectors = [c.vector for _, c in build(iter(history[:8000]))][:60]
    walked = [model.score([v])[0] for v in vectors]
    reference = list(-model.pipeline.score_samples(np.asarray(vectors)))
    assert walked == pytest.approx(reference, rel=1e-12, abs=1e-12)
    assert model.score(vectors[:3]) == walked[:3]


def test_an_artifact_of_feature_version_2_without_day_vectors_is_refused(
    model: BehaviourModel, models_dir: Path, tmp_path: Path
) -> None:
    """An artifact written before day vectors (hours only, approved changes still counted)."""
    path = _copy(model, models_dir, tmp_path)
    meta = orjson.loads((path / META_FILE).read_bytes())
    meta["feature_version"] = 2
    for key in ("day", "day_note"):
        meta.pop(key, None)
    (path / META_FILE).write_bytes(orjson.dumps(meta))
    with pytest.raises(
        ArtifactError, match="feature version 2; this code computes feature version 3: retrain"
    ):
        load(path)
