"""Hourly counts against a learned busy hour: "far more than it usually does in an hour".

Used by api_rate_sustained (requests per provider) and report_exfiltration (downloads per
principal); api_rate_exceeded counts its requests per 10-second step with `count_step`. The
usual hour is the busy hour, the second-highest count among the previous hours with events
(at most `HISTORY`): a mean would call every morning after a quiet night unusual, and one odd
hour cannot inflate the second-highest. It is known once the key was first seen `LEARN_HOURS`
before and has `MIN_HISTORY` active hours; an hour that fired (`"fired"` in its record) is not
learned. On event time only; a late event of a closed hour is not counted.
"""

from __future__ import annotations

from typing import Any, Final

from pipeline.floors import Floors

HISTORY: Final = 24
MIN_HISTORY: Final = 3
LEARN_HOURS: Final = 24
#: The latest events of the current hour a record names (`ids`), the evidence of an hour that fires.
RECENT: Final = 20


def count(
    hours: dict[str, Any], key: str, hour: int, idle_hours: int, event_id: str | None = None
) -> dict[str, Any] | None:
    """Count one event of `key` in the clock hour `hour` (hours since the epoch) and return its
    record (`n`: this hour's count; `ids`: the hour's latest `RECENT` event ids when `event_id` is
    given); None for a late event of a closed hour. Keys idle for `idle_hours` are forgotten
    first."""
    forget_idle(hours, hour - idle_hours, hour)
    mine: dict[str, Any] | None = hours.get(key)
    if mine is None:
        mine = hours[key] = {"h": hour, "n": 0, "since": hour}
    elif hour > mine["h"]:
        if mine["n"] > 0 and "fired" not in mine:  # an hour that alerted is not usual
            mine["hist"] = [*mine.get("hist", []), mine["n"]][-HISTORY:]
        mine["h"], mine["n"] = hour, 0
        mine.pop("fired", None)
        mine.pop("ids", None)
    elif hour < mine["h"]:
        return None
    mine["n"] += 1
    if event_id is not None:
        ids = mine.get("ids")
        if ids is None:
            mine["ids"] = [event_id]
        else:
            ids.append(event_id)
            if len(ids) > RECENT:
                del ids[0]
    return mine


def forget_idle(records: dict[str, Any], cutoff: int, hour: int) -> None:
    """Forget the records whose newest hour (`h`) is before `cutoff`, for an event of `hour`
    (after `cutoff`): the caller then writes into `records` only a new record of `hour` or a
    record's `h` raised. Skipped while the records' floor (`_IDLE`) is at or above `cutoff`, the
    common case; a walk keeps the least hour left (or `hour`) as the floor."""
    idle = _IDLE.below(records, cutoff, _hour_of, hour)
    if idle:
        for key in idle:
            del records[key]


def _hour_of(record: dict[str, Any]) -> int:
    hour: int = record["h"]
    return hour


#: The floors of the records `forget_idle` swept (see pipeline/floors.py): about one dict per
#: account and rate detector.
_IDLE: Final = Floors(1 << 16)


def count_step(mine: dict[str, Any], step: int, steps: int) -> int | None:
    """Count one event of the time step `step` in `mine["s"]` (`str(step)` -> count: the stored
    form), the counts of the latest `steps` steps; return the last step before them (the floor
    of what is counted), None for an event older than them (not counted). Changed in place: the
    same dict, in the same order, as rebuilding it gave."""
    counts: dict[str, int] | None = mine.get("s")
    newest, oldest = step, step
    if counts is not None:
        for key in counts:
            at = _step_of(key)
            if at > newest:
                newest = at
            elif at < oldest:
                oldest = at
    floor = newest - steps
    if step <= floor:
        return None
    if counts is None:
        counts = mine["s"] = {}
    elif oldest <= floor:
        for key in [k for k in counts if _step_of(k) <= floor]:
            del counts[key]
    name = _KEYS.get(step)
    if name is None:
        name = str(step)
        _remember_step(name, step)
    counts[name] = counts.get(name, 0) + 1
    return floor


#: `int(key)` of the step keys seen lately, and `str(step)` back: a lookup costs less than
#: parsing or formatting (compiled, about a tenth), and an account's steps recur for a minute;
#: both emptied when full.
_STEPS: Final[dict[str, int]] = {}
_KEYS: Final[dict[int, str]] = {}
_MAX_STEPS: Final = 8192


def _step_of(key: str) -> int:
    at = _STEPS.get(key)
    if at is None:
        at = int(key)
        _remember_step(key, at)
    return at


def _remember_step(key: str, step: int) -> None:
    if len(_STEPS) >= _MAX_STEPS or len(_KEYS) >= _MAX_STEPS:
        _STEPS.clear()
        _KEYS.clear()
    _STEPS[key] = step
    _KEYS[step] = key


def hour_evidence(mine: dict[str, Any], event_id: str) -> tuple[str, ...]:
    """The hour's latest events before `event_id`: what an alert on the hour rests on."""
    return tuple(i for i in mine.get("ids", ()) if i != event_id)


def usual_hour(mine: dict[str, Any]) -> int | None:
    """The key's busy hour, None while it is still learning."""
    history: list[Any] = mine.get("hist", [])
    if len(history) < MIN_HISTORY or mine["h"] - mine["since"] < LEARN_HOURS:
        return None
    # `sorted(history)[-2]` in one pass, without the sorted copy (asked at every event)
    top, second = history[0], history[1]
    if second > top:
        top, second = second, top
    for index in range(2, len(history)):
        count = history[index]
        if count > top:
            top, second = count, top
        elif count > second:
            second = count
    return int(second)
