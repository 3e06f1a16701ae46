"""Hourly counts against a learned busy hour: "far more than it usually does in an hour".

Used by api_rate_sustained (requests per provider) and report_exfiltration (downloads per
principal). The usual hour is the busy hour, the second-highest count among the previous hours
with events (at most `HISTORY`): a mean would call every morning after a quiet night unusual, and
one odd hour cannot inflate the second-highest. It is known once the key was first seen
`LEARN_HOURS` before and has `MIN_HISTORY` active hours; an hour that fired (`"fired"` in its
record) is not learned. On event time only; a late event of a closed hour is not counted.
"""

from __future__ import annotations

from typing import Any

HISTORY = 24
MIN_HISTORY = 3
LEARN_HOURS = 24
#: The latest events of the current hour a record names (`ids`), the evidence of an hour that fires.
RECENT = 20


def count(
    hours: dict[str, Any], key: str, hour: int, idle_hours: int, event_id: str | None = None
) -> dict[str, Any] | None:
    """Count one event of `key` in the clock hour `hour` (hours since the epoch) and return its
    record (`n`: this hour's count; `ids`: the hour's latest `RECENT` event ids when `event_id` is
    given); None for a late event of a closed hour. Keys idle for `idle_hours` are forgotten
    first."""
    cutoff = hour - idle_hours
    for record in hours.values():  # allocates nothing while no key is idle, the common case
        if record["h"] < cutoff:
            for idle in [k for k, s in hours.items() if s["h"] < cutoff]:
                del hours[idle]
            break
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


def hour_evidence(mine: dict[str, Any], event_id: str) -> tuple[str, ...]:
    """The hour's latest events before `event_id`: what an alert on the hour rests on."""
    return tuple(i for i in mine.get("ids", ()) if i != event_id)


def usual_hour(mine: dict[str, Any]) -> int | None:
    """The key's busy hour, None while it is still learning."""
    history = mine.get("hist", [])
    if len(history) < MIN_HISTORY or mine["h"] - mine["since"] < LEARN_HOURS:
        return None
    return int(sorted(history)[-2])
