"""Exponential backoff with jitter, so receivers coming back are not hit by every feed at once;
and the receiver's own `Retry-After` (RFC 9110: seconds, or an HTTP date) when it sends one."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

#: Statuses whose Retry-After is honoured (Too Many Requests, Service Unavailable).
RETRY_AFTER_STATUSES = (429, 503)


def backoff(attempt: int, initial: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): the exponential step
    `initial * 2**(attempt-1)`, capped, then drawn uniformly from its upper half."""
    step = min(cap, initial * 2 ** (attempt - 1))
    return step * (0.5 + 0.5 * (rng or random).random())


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date (a date in the
    past is 0); None when absent or unreadable (the backoff applies then)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**9))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
