"""Retraining without a restart: the slot swaps in newer valid artifacts and reports once."""

from __future__ import annotations

import shutil
from pathlib import Path

from detectors.behaviour.model import MODEL_FILE, ModelSlot, save


def _clone(source: Path, models_dir: Path, stamp: str) -> Path:
    """A copy of `source` written as a newer artifact (same model, later creation time)."""
    import skops.io as sio

    from detectors.behaviour.model import load

    model = load(source)
    return save(
        models_dir,
        sio.load(source / MODEL_FILE, trusted=["sklearn.tree._tree.Tree"]),
        {**model.meta, "created_at": stamp},
    )


def test_cold_start_then_pickup_then_swap_and_a_bad_artifact_is_refused_once(
    models_dir: Path, tmp_path: Path
) -> None:
    source = next(p for p in models_dir.iterdir() if p.name.startswith("behaviour-"))
    target = tmp_path / "models"
    slot = ModelSlot(target)
    assert slot.reload() and slot.model is None and "idle" in slot.message  # said once
    assert not slot.reload()

    first = _clone(source, target, "2026-01-01T00:00:00.000Z")
    assert (
        slot.reload()
        and slot.model is not None
        and slot.model.name == first.name
        and slot.status == "loaded"
    )
    assert not slot.reload()

    second = _clone(source, target, "2026-02-01T00:00:00.000Z")
    assert slot.reload() and slot.model.name == second.name

    bad = _clone(source, target, "2026-03-01T00:00:00.000Z")
    (bad / MODEL_FILE).write_bytes((bad / MODEL_FILE).read_bytes()[:-10])
    assert slot.reload() and "refused" in slot.message and slot.model.name == second.name
    assert not slot.reload()  # not re-read, not re-reported
    shutil.rmtree(bad)
    (target / ".tmp-123-x").mkdir()  # a half-written artifact is never a candidate
    assert not slot.reload() and slot.model.name == second.name


def test_the_provider_stage_loads_the_model_and_hands_it_to_its_stage(
    models_dir: Path, day_models_dir: Path
) -> None:
    """The stage keeps a slot of its own (it may run apart from the worker): the model it loads
    reaches the state it folds, which scores providers' days across accounts when the model has
    a day forest."""
    import asyncio

    from detectors.provider_wide.run import Stage
    from pipeline.config import DetectionConfig, Settings
    from streams.provider_stage import ProviderStage

    for directory, days in ((models_dir, False), (day_models_dir, True)):
        stage = ProviderStage(Settings.from_env({"PW_MODEL_DIR": str(directory)}))
        stage.stage = Stage(DetectionConfig())
        assert stage.stage.model is None
        asyncio.run(stage.reload_model())
        model = stage.stage.model
        assert model is not None and model is stage.models.model
        assert (model.day is not None) == days
