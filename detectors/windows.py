"""Event-time arithmetic shared by detectors (never the wall clock: replays must agree)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from pipeline.event import format_ms, timestamp_ms


@lru_cache(maxsize=8192)
def epoch_ms(ts: str) -> int:
    """Milliseconds since the epoch of a normalized `...Z` timestamp (cached: every detector
    asks for the same event's time)."""
    return timestamp_ms(ts, "occurred_at")


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
