"""Event-time arithmetic shared by detectors (never the wall clock: replays must agree)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pipeline.event import format_ms, timestamp_ms

#: A timestamp as events store it (pipeline/event.py `format_ms`), ASCII digits only.
_NORMALIZED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
#: Epoch milliseconds of the first instant of a `YYYY-MM-DD` (bounded: events come day by day).
_DAYS: dict[str, int] = {}
_MAX_DAYS = 100_000


@lru_cache(maxsize=8192)
def epoch_ms(ts: str) -> int:
    """Milliseconds since the epoch of a normalized `...Z` timestamp (cached: every detector
    asks for the same event's time).

    `pipeline.event.timestamp_ms`, read by position when `ts` has the stored form (the day's
    start computed by `timestamp_ms` once per day); anything else, and a time of day that is
    none (`24:00`, `:60`), goes to `timestamp_ms` itself, which accepts or refuses it as always.
    """
    if _NORMALIZED.fullmatch(ts) is None:
        return timestamp_ms(ts, "occurred_at")
    hours, minutes, seconds = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
    if hours > 23 or minutes > 59 or seconds > 59:
        return timestamp_ms(ts, "occurred_at")
    clock = ((hours * 60 + minutes) * 60 + seconds) * 1000 + int(ts[20:23])
    day = _DAYS.get(ts[:10])
    if day is None:
        day = timestamp_ms(ts, "occurred_at") - clock  # refuses an impossible date as before
        if len(_DAYS) < _MAX_DAYS:
            _DAYS[ts[:10]] = day
    return day + clock


def bucket(ts: str, minutes: int) -> str:
    """The start of the `minutes`-long window holding `ts`, as a timestamp string.

    Used as a Finding's `window`: repeats of one detector and key inside it fold into one alert.
    """
    size = max(1, minutes) * 60_000
    return format_ms(epoch_ms(ts) // size * size)


def local_time(ts: str, tz: str) -> datetime:
    """`ts` in the IANA time zone `tz`."""
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(epoch_ms(ts) / 1000, UTC).astimezone(ZoneInfo(tz))


def recent_after(record: dict[str, Any], name: str, floor: int, keep: int) -> list[list[Any]]:
    """`record[name]`, the latest events as `[time, event id]` in arrival order, without those at
    or before `floor` and cut to the latest `keep - 1`: room for the event at hand. Changed in
    place (created when missing): the same list as rebuilding it gave."""
    recent: list[list[Any]] | None = record.get(name)
    if recent is None:
        recent = record[name] = []
        return recent
    for item in recent:
        if item[0] <= floor:
            recent[:] = [i for i in recent if i[0] > floor]
            break
    if len(recent) >= keep:
        del recent[: len(recent) - (keep - 1)]
    return recent


#: How late (event time, behind the newest event seen) an event may arrive and still count in
#: the provider-wide rules' windows: the stage merges the ledger's partitions by event time, but
#: a partition whose ingest lags delivers its events late.
LATENESS_MS = 3_600_000


def densest(items: list[list[Any]], now: int, size: int) -> list[list[Any]]:
    """The items (`[ms, key, ...]`, sorted by time) of the `size`-long window that holds `now`
    and the most distinct keys: how many accounts one spray reached, whichever of its events
    arrives last."""
    best: list[list[Any]] = []
    best_keys = 0
    for start in sorted({i[0] for i in items if now - size <= i[0] <= now} | {now}):
        inside = [i for i in items if start <= i[0] <= start + size]
        keys = len({i[1] for i in inside})
        if keys > best_keys:
            best, best_keys = inside, keys
    return best
