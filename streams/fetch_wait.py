"""How long the ingest consumer lets the broker hold a fetch that finds nothing new.

While records arrive the wait is short (`BUSY_MS`): aiokafka keeps one fetch in flight per
broker, and a partition that was paused or had records left unconsumed is fetched again only
after the fetch in flight returns, so a long wait would be added to its next records. An idle
worker does not need that: with 5 ms it sent about 200 fetch requests a second with nothing
in them, which cost it about 0.1 of a core and the broker about as much
(docs/performance.md, "At live rates: transactions, overlap, and an idle worker's floor").
Once nothing has been fetched for `IDLE_AFTER_SECONDS` and no partition is paused, the wait
becomes `IDLE_MS`. That costs the first records after a quiet spell nothing: the broker answers
a held fetch as soon as any of its partitions has a record (fetch.min.bytes is 1). The next
fetch after records arrive uses the short wait again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The broker's longest hold of a fetch with nothing for it, while records arrive (ms).
BUSY_MS = 5
#: ... and once the worker is idle (ms).
IDLE_MS = 100
#: Seconds without a fetched record (and no partition paused) after which the worker is idle.
IDLE_AFTER_SECONDS = 1.0


class FetchWait:
    """The wait for the consumer's next fetch requests, from what the last fetches brought."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self.ms = BUSY_MS
        self._active_at = now()

    def update(self, busy: bool) -> int | None:
        """After a fetch: `busy` if it brought records or a partition is paused (records are
        waiting to be fetched). The new wait in ms when it changes, else None."""
        now = self._now()
        if busy:
            self._active_at = now
            wanted = BUSY_MS
        elif now - self._active_at >= IDLE_AFTER_SECONDS:
            wanted = IDLE_MS
        else:
            wanted = self.ms
        if wanted == self.ms:
            return None
        self.ms = wanted
        return wanted
