"""Exponential backoff with jitter, so receivers coming back are not hit by every feed at once."""

from __future__ import annotations

import random


def backoff(attempt: int, initial: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): the exponential step
    `initial * 2**(attempt-1)`, capped, then drawn uniformly from its upper half."""
    step = min(cap, initial * 2 ** (attempt - 1))
    return step * (0.5 + 0.5 * (rng or random).random())
