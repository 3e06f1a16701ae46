"""Run every detector over one account's events: the single place where detection happens.

Used by the ingest service (streams/ingest_batch.py), by the fixture-case tests, and by replays, so the
three cannot disagree. `state` is the account's JSON-serializable state
(`{"auth": ..., "det": {detector: its state}}`); `observe` changes it in place.

`apply_entry` is what the worker does with one ledger entry (`apply_event`: with the event and its
seq in hand): `observe`, plus the account's ledger
position (`seq`) and its open alerts, folded. The worker's `account_state` table holds, for every
account, exactly what `apply_entry` over the account's ledger entries from seq 1 gives; that is
how a lost or stale table is rebuilt (streams/state_repair.py) and how the restart tests check it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from detectors import ACTIONS, ALL, NEEDS_MODEL, Context, DetectFn
from pipeline import authorization
from pipeline.alert import Alert, Finding, alert_id, expired, fold, keep_open
from pipeline.config import DetectionConfig
from pipeline.event import Event
from pipeline.ledger import event_of

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel


def new_state() -> dict[str, Any]:
    return {"auth": authorization.empty(), "det": {}}


#: The detectors one event goes through, in `ALL`'s order.
Plan = tuple[tuple[str, DetectFn], ...]
#: Plans by action, without and with a behaviour model: built once per action (bounded, in case
#: of unexpected action names).
_PLANS: dict[str, Plan] = {}
_MODEL_PLANS: dict[str, Plan] = {}
MAX_PLANS = 4096


def plan(action: str, modelled: bool) -> Plan:
    """The detectors of `ALL` that look at `action` (detectors/__init__.py `ACTIONS`), less those
    that need a behaviour model when there is none (`NEEDS_MODEL`): the others would find
    nothing and leave their state as it was."""
    plans = _MODEL_PLANS if modelled else _PLANS
    found = plans.get(action)
    if found is None:
        found = tuple(
            (name, detector)
            for name, detector in ALL
            if (modelled or name not in NEEDS_MODEL)
            and (name not in ACTIONS or action.startswith(ACTIONS[name]))
        )
        if len(plans) < MAX_PLANS:
            plans[action] = found
    return found


def observe(
    state: dict[str, Any],
    event: Event,
    config: DetectionConfig,
    model: BehaviourModel | None = None,
    timings: dict[str, float] | None = None,
) -> list[Finding]:
    """Fold `event` into the account's state and return what the detectors found.

    With `timings`, each detector's time on this event (seconds) is added under its name: the
    detect agent times a sample of events for its metrics, so the hot path stays untimed. A
    detector not called for this event (see `plan`) counts as 0.

    Only the detectors that look at the event run (`plan`), in `ALL`'s order: the others would
    return nothing and leave their state as it was, so the findings, their order and the state
    are what calling every detector gives.

    `model`: the behaviour model in force (detectors/behaviour/model.py), None before training.
    """
    if event["action"] in authorization.AUTHORIZATION_ACTIONS:
        authorization.apply(state["auth"], event)
    ctx = Context(auth=state["auth"], config=config, model=model)
    findings: list[Finding] = []
    detector_state: dict[str, dict[str, Any]] = state["det"]
    # A detector without state gets an empty dict, kept only if it put something in it (most
    # detectors keep none for most accounts): one spare dict per event, not one per detector.
    spare: dict[str, Any] = {}
    detectors = plan(event["action"], model is not None)
    if timings is not None and len(detectors) < len(ALL):
        for name, _ in ALL:
            timings.setdefault(name, 0.0)
    for name, detector in detectors:
        own = detector_state.get(name)
        if own is None:
            own = spare
        if timings is None:
            found = detector(event, own, ctx)
        else:
            started = perf_counter()
            found = detector(event, own, ctx)
            timings[name] = timings.get(name, 0.0) + perf_counter() - started
        if found:
            findings.extend(found)
        if own is spare:
            if spare:
                detector_state[name] = spare
                spare = {}
        elif not own:
            del detector_state[name]
    return findings


@dataclass
class Applied:
    """What one ledger entry changed besides the account's state."""

    #: New or updated alert versions, in the order the findings came (a key may repeat).
    alerts: list[Alert] = field(default_factory=list)
    #: Alert ids closed by this entry (no new evidence for `pipeline.alert.OPEN_DAYS`).
    closed: list[str] = field(default_factory=list)


def apply_entry(
    state: dict[str, Any],
    entry: dict[str, Any],
    config: DetectionConfig,
    model: BehaviourModel | None = None,
    open_alert: Callable[[str], Alert | None] = lambda key: None,
    timings: dict[str, float] | None = None,
) -> Applied | None:
    """Fold one ledger entry (its account's next `seq`) into the account's `state`, in place.

    `open_alert(alert_id)` gives the open alert of that id (the worker's `open_alerts` table),
    so a repeated finding updates it. Returns the alert versions to publish and the alert ids
    closed, or None when the state already holds this entry (`seq` at or below its own).
    """
    return apply_event(
        state, event_of(entry), int(entry["seq"]), config, model, open_alert, timings
    )


_NOTHING = Applied()


def apply_event(
    state: dict[str, Any],
    event: Event,
    seq: int,
    config: DetectionConfig,
    model: BehaviourModel | None = None,
    open_alert: Callable[[str], Alert | None] = lambda key: None,
    timings: dict[str, float] | None = None,
) -> Applied | None:
    """`apply_entry` of the entry of `event` at `seq` (the ingest service has the event itself)."""
    if seq <= int(state.get("seq", 0)):
        return None
    state["seq"] = seq
    applied: Applied | None = None
    folded: dict[str, Alert] = {}
    for finding in observe(state, event, config, model, timings=timings):
        key = alert_id(finding.detector, finding.key, finding.window)
        before = folded[key] if key in folded else open_alert(key)
        alert = fold(before, finding, event, seq)
        if alert is before:
            continue  # a replayed event, already part of the alert
        folded[key] = alert
        if applied is None:
            applied = Applied()
        applied.alerts.append(alert)
        keep_open(state.setdefault("open", {}), key, alert["last_seen"])
    opened = state.get("open")
    if opened:
        for key in expired(opened, event["occurred_at"]):
            del opened[key]
            if applied is None:
                applied = Applied()
            applied.closed.append(key)
    return applied or _NOTHING
