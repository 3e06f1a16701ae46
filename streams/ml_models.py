"""The behaviour model in force in this worker: loaded at start, swapped when a newer one appears.

`partnerwatch train` writes artifacts into `PW_MODEL_DIR` (default `PW_DATA_DIR/models`); every
`PW_MODEL_RELOAD_SECONDS` this module checks that directory and swaps in the newest valid
artifact (`detectors.behaviour.model.ModelSlot`), without stopping the worker: the detect agent
reads `current()` for each event, a read-only handle shared by every account. Loading (sklearn
and skops imports, file hashing) runs in a thread, off the event loop. Without a model the
`behaviour_anomaly` detector stays idle: said once in the log, and `pw_behaviour_model_loaded`
is 0. A refused artifact (other feature version, changed file, untrusted types) is logged once
and counted; the model in force, if any, stays.
"""

from __future__ import annotations

import asyncio

import structlog

from detectors.behaviour.model import BehaviourModel, ModelSlot
from sinks.metrics import BEHAVIOUR_MODEL_LOADED, BEHAVIOUR_MODEL_LOADS, BEHAVIOUR_MODEL_REFUSED
from streams.app import app, settings

log = structlog.get_logger(__name__)

SLOT = ModelSlot(settings.models_path)
_lock = asyncio.Lock()


def current() -> BehaviourModel | None:
    """The model the detectors use now (None: cold start)."""
    return SLOT.model


def publish(slot: ModelSlot, changed: bool, before: str | None, refused_before: int) -> None:
    """Turn the slot's status into the log line and the metrics."""
    BEHAVIOUR_MODEL_LOADED.set(1 if slot.model is not None else 0)
    if len(slot.refused) > refused_before:
        BEHAVIOUR_MODEL_REFUSED.inc(len(slot.refused) - refused_before)
    now = slot.model.name if slot.model is not None else None
    if now is not None and now != before:
        BEHAVIOUR_MODEL_LOADS.inc()
    if changed:
        (log.info if slot.model is not None or not slot.refused else log.warning)(
            "behaviour_model", status=slot.message
        )


#: Set once the first look for a model (at start) has ended, whatever it found.
_looked = asyncio.Event()


async def check() -> None:
    try:
        async with _lock:
            before = SLOT.model.name if SLOT.model is not None else None
            refused = len(SLOT.refused)
            changed = await asyncio.get_running_loop().run_in_executor(None, SLOT.reload)
            publish(SLOT, changed, before, refused)
    finally:
        _looked.set()


async def first_look(timeout: float) -> bool:
    """Wait until the first look for a model has ended (True), or `timeout` seconds (False)."""
    if _looked.is_set():
        return True
    try:
        await asyncio.wait_for(_looked.wait(), timeout)
    except TimeoutError:
        return False
    return True


@app.task
async def load_at_start() -> None:
    await check()


if settings.model_reload_seconds > 0:

    @app.timer(interval=settings.model_reload_seconds)
    async def reload_model() -> None:
        await check()
