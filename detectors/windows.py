"""Event-time arithmetic shared by detectors (never the wall clock: replays must agree)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
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


@lru_cache(maxsize=8192)
def epoch_ms(ts: str) -> int:
    """Milliseconds since the epoch of a normalized `...Z` timestamp (cached: every detector
    asks for the same event's time; a rule asks through `Context.epoch_ms`, which remembers the
    event's).

    `pipeline.event.timestamp_ms`, read by position when `ts` has the stored form: a minute
    already read (`_MINUTES`) plus the seconds and milliseconds (`:SS.mmmZ`, ASCII digits, at
    most 59 seconds); anything else goes to `_parse`.
    """
    minute = _MINUTES.get(ts[:16])
    if minute is not None and len(ts) == 24 and ts[16] == ":" and ts[19] == "." and ts[23] == "Z":
        rest = ts[17:19] + ts[20:23]  # SSmmm: seconds * 1000 + milliseconds
        if rest.isascii() and rest.isdigit() and rest < "60000":
            return minute + int(rest)
    return _parse(ts)


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
    """Forget every event time read (`epoch_ms`'s cache and the minutes): what a benchmark does
    to make each event's time new again, as it is in a real run."""
    epoch_ms.cache_clear()
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
