"""Event-time arithmetic shared by detectors (never the wall clock: replays must agree)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.event import format_ms, timestamp_ms

#: A timestamp as events store it (pipeline/event.py `format_ms`), ASCII digits only.
_NORMALIZED: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
#: Epoch milliseconds of the first instant of a `YYYY-MM-DD` (bounded: events come day by day).
_DAYS: Final[dict[str, int]] = {}
_MAX_DAYS: Final = 100_000
#: Epoch milliseconds of the first instant of a `YYYY-MM-DDTHH:MM` (a stored timestamp's first 16
#: characters), put here only by `_parse` once it has read a whole timestamp of that minute; emptied
#: when full (events come minute by minute: the next ones fill it again).
_MINUTES: Final[dict[str, int]] = {}
_MAX_MINUTES: Final = 4096
#: Milliseconds of a stored time's seconds (`00`-`59`) and of its milliseconds (`000`-`999`), by
#: their text: two lookups where reading them as numbers took a check that they are ASCII digits
#: and an `int` of a string; anything else (other digits, a 60th second) is not here.
_SECONDS: Final[dict[str, int]] = {f"{s:02d}": s * 1000 for s in range(60)}
_MILLIS: Final[dict[str, int]] = {f"{m:03d}": m for m in range(1000)}


#: The last time `epoch_ms` read and its milliseconds; at first, and once forgotten, an object
#: equal to no string (None would pass for a time of None). One tuple, replaced whole: a reader on
#: another thread sees an old pair or a new one, never half of each.
_NO_TIME: Final = object()
_last: tuple[object, int] = (_NO_TIME, 0)


def epoch_ms(ts: str) -> int:
    """Milliseconds since the epoch of a normalized `...Z` timestamp.

    `pipeline.event.timestamp_ms`, read by position when `ts` has the stored form: a minute
    already read (`_MINUTES`) plus the seconds and milliseconds (`:SS.mmmZ`, ASCII digits, at
    most 59 seconds: `_SECONDS`, `_MILLIS`); anything else goes to `_parse`.

    The last time read is remembered (`_last`): in the provider stage an event's rules ask for
    its time, then its alert sweep and the merge's count of event time ask again (the same text,
    not always the same object). Nothing more is cached: each event's time is new (a cache of times missed on every
    event and paid its own bookkeeping each time), and a rule asks through `Context.epoch_ms`,
    which remembers the event's.
    """
    global _last
    last = _last
    if ts == last[0]:
        return last[1]
    if len(ts) == 24 and ts[16] == ":" and ts[19] == "." and ts[23] == "Z":
        minute = _MINUTES.get(ts[:16])
        if minute is not None:
            seconds = _SECONDS.get(ts[17:19])
            millis = _MILLIS.get(ts[20:23])
            if seconds is not None and millis is not None:
                ms = minute + seconds + millis
                _last = (ts, ms)
                return ms
    ms = _parse(ts)
    _last = (ts, ms)
    return ms


def _parse(ts: str) -> int:
    """`epoch_ms` of a timestamp whose minute is not remembered, or of anything else: the stored
    form read by position (the day's start from `timestamp_ms` once per day), the minute then
    remembered; anything else, and a time of day that is none (`24:00`, `:60`), goes to
    `timestamp_ms` itself, which accepts or refuses it as always."""
    if _NORMALIZED.fullmatch(ts) is None:
        return timestamp_ms(ts, "occurred_at")
    hours, minutes, seconds = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
    if hours > 23 or minutes > 59 or seconds > 59:
        return timestamp_ms(ts, "occurred_at")
    clock = (hours * 60 + minutes) * 60_000
    day = _DAYS.get(ts[:10])
    if day is None:
        # refuses an impossible date as before
        day = timestamp_ms(ts, "occurred_at") - clock - seconds * 1000 - int(ts[20:23])
        if len(_DAYS) < _MAX_DAYS:
            _DAYS[ts[:10]] = day
    if len(_MINUTES) >= _MAX_MINUTES:
        _MINUTES.clear()
    _MINUTES[ts[:16]] = day + clock
    return day + clock + seconds * 1000 + int(ts[20:23])


def clear_caches() -> None:
    """Forget every event time read (the last one and the minutes): what a benchmark does to
    make each event's time new again, as it is in a real run."""
    global _last
    _last = (_NO_TIME, 0)
    _MINUTES.clear()


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
LATENESS_MS: Final = 3_600_000


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
