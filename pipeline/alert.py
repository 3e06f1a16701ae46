"""The alert contract: deterministic ids, and folding repeated findings into one alert.

An alert's id is the first 32 hex characters (128 bits) of `sha256(detector | key | window)`, so
replaying the log yields the same ids and a warehouse or feed that keeps the latest version per id
never shows a duplicate.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Final

from pipeline.event import Event
from pipeline.floors import Floors

Alert = dict[str, Any]
MAX_EVIDENCE = 50


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector decided about one event; the detect agent folds findings into alerts."""

    detector: str
    severity: str
    key: str
    window: str
    title: str
    summary: str
    response: tuple[str, ...]
    #: Earlier events the finding rests on (the policy that set an obligation whose absence it
    #: reports), named as evidence before the event that triggered it.
    related: tuple[str, ...] = ()


def alert_id(detector: str, key: str, window: str) -> str:
    return hashlib.sha256(f"{detector}|{key}|{window}".encode()).hexdigest()[:32]


def fold(previous: Alert | None, finding: Finding, event: Event, seq: int | None = None) -> Alert:
    """A new alert for `finding`, or `previous` updated with one more piece of evidence.

    `seq` is the event's ledger position on its account: an alert remembers the last one it
    folded (`last_seq`), so an event replayed after a crash is never counted twice, even once
    the evidence list is full.
    """
    actor = event["actor"]
    seen = event["occurred_at"]
    if previous is None:
        alert: Alert = {
            "alert_id": alert_id(finding.detector, finding.key, finding.window),
            "detector": finding.detector,
            "severity": finding.severity,
            "account_id": event["account_id"],
            "provider_id": actor.get("provider_id", ""),
            "principal_id": actor["principal_id"],
            "title": finding.title,
            "summary": finding.summary,
            "evidence_event_ids": _with_evidence([], finding, event)[:MAX_EVIDENCE],
            "first_seen": seen,
            "last_seen": seen,
            "count": 1,
            "response": list(finding.response),
        }
        if seq is not None:
            alert["last_seq"] = seq
        return alert
    if seq is not None and seq <= int(previous.get("last_seq", 0)):
        return previous  # a replayed event, already folded
    if event["event_id"] in previous["evidence_event_ids"]:
        return previous
    alert = dict(previous)
    alert["evidence_event_ids"] = _with_evidence(list(alert["evidence_event_ids"]), finding, event)[
        :MAX_EVIDENCE
    ]
    alert["count"] = int(alert["count"]) + 1
    alert["first_seen"] = min(alert["first_seen"], seen)
    alert["last_seen"] = max(alert["last_seen"], seen)
    alert["summary"] = finding.summary
    if seq is not None:
        alert["last_seq"] = seq
    return alert


def _with_evidence(evidence: list[str], finding: Finding, event: Event) -> list[str]:
    """`evidence` plus the finding's related events and the triggering event, each named once."""
    for event_id in (*finding.related, event["event_id"]):
        if event_id not in evidence:
            evidence.append(event_id)
    return evidence


#: An alert that gathered no evidence for this long (event time) is closed: it leaves the detect
#: agent's state. Longer than any detector's window (the takeover rule folds payouts for 72 h).
OPEN_DAYS = 7


def closed_alerts(opened: dict[str, str], now: str, days: int = OPEN_DAYS) -> list[str]:
    """Ids in `opened` (alert id -> last_seen) whose last evidence is older than `days` before `now`."""
    if not opened:
        return []
    horizon = _horizon(now, days)
    return [alert for alert, last_seen in opened.items() if last_seen < horizon]


#: The floors of the accounts' open alerts (pipeline/floors.py): the least `last_seen` in each.
_OPEN: Final = Floors(1 << 16)


def keep_open(opened: dict[str, str], alert: str, last_seen: str) -> None:
    """Note that `alert` is open with its last evidence at `last_seen`: the only writer of an
    `opened` that `expired` sweeps."""
    opened[alert] = last_seen
    _OPEN.lower(opened, last_seen)


def expired(opened: dict[str, str], now: str) -> list[str]:
    """`closed_alerts(opened, now)`, for a caller that deletes each id returned from `opened` and
    writes it only with `keep_open`: nothing to read while the least `last_seen` left by the
    previous sweep is inside the horizon, the common case."""
    if not opened:
        return []
    return _OPEN.below(opened, _horizon(now, OPEN_DAYS)) or []


#: The normalized event time (`pipeline.event.format_ms`): its day, and the time of day after it.
_NORMALIZED = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
)


#: `_horizon(now, OPEN_DAYS)` by the minute of `now` (`YYYY-MM-DDTHH:MM`, of a time that
#: `_NORMALIZED` matched whole): the horizon's minute. Emptied when it holds `_MAX_MINUTES`.
_OPEN_MINUTES: dict[str, str] = {}
_MAX_MINUTES = 4096


def _horizon(now: str, days: int) -> str:
    """`now` less `days` days, as a timestamp string. An event's time is in the normalized form,
    where only the day changes (UTC has no shifts): the earlier day comes from a cache instead of
    parsing and formatting the whole time for every event, and for `OPEN_DAYS` (every event
    with open alerts asks) a minute already seen is read by position, as `_NORMALIZED` would
    (`:SS.mmmZ`, ASCII digits, at most 59 seconds), without the regular expression."""
    if days == OPEN_DAYS and len(now) == 24:
        minute = _OPEN_MINUTES.get(now[:16])
        if minute is not None and now[16] == ":" and now[19] == "." and now[23] == "Z":
            digits = now[17:19] + now[20:23]
            if digits.isascii() and digits.isdigit() and now[17] < "6":
                return minute + now[16:]
    fields = _NORMALIZED.fullmatch(now)
    if fields is not None:
        day = _days_before(fields[1], fields[2], fields[3], days)
        if day is not None:
            if days == OPEN_DAYS:
                if len(_OPEN_MINUTES) >= _MAX_MINUTES:
                    _OPEN_MINUTES.clear()  # event time moves on: start over, as epoch_ms does
                _OPEN_MINUTES[now[:16]] = day + now[10:16]
            return day + now[10:]
    from pipeline.event import format_ms, timestamp_ms

    return format_ms(timestamp_ms(now, "now") - days * 86_400_000)


@lru_cache(maxsize=1024)
def _days_before(year: str, month: str, day: str, days: int) -> str | None:
    """`YYYY-MM-DD` of `days` days before that day; None unless it is a real day in 1970-2200
    (the general path then decides)."""
    try:
        start = date(int(year), int(month), int(day))
    except ValueError:
        return None
    if not 1970 <= start.year <= 2200 or start.toordinal() - days < 1:
        return None
    return (start - timedelta(days=days)).isoformat()
