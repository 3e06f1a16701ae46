"""The dedup window of one ledger partition: the ids of the events sequenced in the last
`PW_DEDUP_WINDOW_DAYS`, so that a repeat inside the window is recognized (`LedgerState`,
pipeline/ledger.py, is this window and the chain heads together).

The window (fractions of a day allowed) keeps ids in buckets of one day (of the window itself
when it is shorter than a day) and forgets a whole bucket at once: an id is remembered for at
least the window and at most the window plus one bucket. A repeat after that is a *late
repeat*: a new ledger entry with its own seq, stored in the warehouse as a row of its own (rows
are ledger entries, keyed by (account_id, seq)), so the chain stays gap-free.

Exact mode (the default here, and what replays use) keeps every id of the window.
Bounded mode (`exact_seconds` and `filter_mb`, the ingest service's `PW_DEDUP_EXACT_SECONDS`
and `PW_DEDUP_FILTER_MB`) keeps ids exactly only for their first `exact_seconds`, in one-minute
slots, and then moves a slot into its bucket's Bloom filter (`pipeline.id_filter`, a fixed size
per bucket), once the warehouse holds the slot's entries (`seal`, given how far the warehouse
loader has stored the ledger partition). Before a batch is sequenced, the ids the filters say
may have been seen (`prepare`) are looked up in the warehouse, and only those found there
are duplicates (`confirmed_seen`): a filter's "maybe" is never acted on alone. Memory is then
the exact tier (about `exact_seconds` of ids, more while the loader lags) plus the filters,
whatever the window and the rate.

The exact tier keeps a slot's ids in a set as they are sequenced, and compacts them into sorted
runs of their 16-byte digests (`pipeline.id_runs`, 16 bytes per id against about 110 in a set)
before a batch is sequenced (`prepare`): every slot older than the current one, and the current
one whenever its set holds `RUN_IDS` ids. `prepare` also looks the batch's ids up in the runs,
once for the whole batch, so that sequencing an event asks only the sets and that answer. A
state that is never prepared (replays, `evaluate`: `LedgerState.accept`) keeps sets only, as
before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from typing import Final

from pipeline.id_filter import IdFilter, any_contains, filter_bits
from pipeline.id_runs import IdRun, any_holds, halves_of
from pipeline.memo import MISSING, Memo

DAY_MS = 86_400_000
#: Slot length of the exact tier in bounded mode.
SLOT_MS = 60_000
#: Ids a slot's set takes before `prepare` (or, during a recovery, `observe`) compacts them into a
#: sorted run: the sets then hold about this many ids per partition at most (2 MiB), plus a batch.
RUN_IDS = 16_384


class DedupWindow:
    """The recent event ids of one partition, exact or bounded (the module says how)."""

    def __init__(
        self, dedup_window_days: float, exact_seconds: float = 0, filter_mb: float = 0
    ) -> None:
        self.window = dedup_window_days
        window_ms = max(1, round(dedup_window_days * DAY_MS))
        #: Bucket length in ms: a day, or the whole window when it is shorter (tests use seconds).
        self.bucket_ms = min(DAY_MS, window_ms)
        self.buckets = -(-window_ms // self.bucket_ms)
        self.bounded = exact_seconds > 0 and filter_mb > 0
        #: Slot length of the exact tier: the bucket in exact mode, a minute in bounded mode
        #: (the exact span, at least a second, when that is shorter: tests use seconds).
        exact_ms = max(1000, round(exact_seconds * 1000))
        self.slot_ms = min(SLOT_MS, self.bucket_ms, exact_ms) if self.bounded else self.bucket_ms
        self.exact_slots = max(1, -(-round(exact_seconds * 1000) // self.slot_ms))
        #: (bucket, slot) -> `id_digest` of the events sequenced in it since it was last
        #: compacted into `runs` (held exactly, as the runs are).
        self.exact: dict[tuple[int, int], set[bytes]] = {}
        #: (bucket, slot) -> the slot's compacted ids: sorted runs of their digests (one run
        #: once the slot is no longer written; a few, largest first, while it is).
        self.runs: dict[tuple[int, int], list[IdRun]] = {}
        #: digest -> whether `runs` holds it, for the ids of the batch being sequenced
        #: (`prepare`); emptied whenever `runs` changes.
        self._in_runs: dict[bytes, bool] = {}
        #: (bucket, slot) -> the ledger partition's end offset when the slot last took an entry
        #: that is committed (`committed`): the warehouse must hold the ledger up to it to seal.
        self.ends: dict[tuple[int, int], int] = {}
        #: (bucket, slot) -> the batch (`close_batch`) that last took an entry in it, for the
        #: slots whose latest entries are not committed yet (`seal` leaves them alone)
        self._touched: dict[tuple[int, int], int] = {}
        #: the batch being sequenced
        self._batch = 0
        #: bucket -> the Bloom filter of the ids sealed out of the exact tier (bounded mode).
        self.filters: dict[int, IdFilter] = {}
        self.filter_bits = filter_bits(filter_mb, self.buckets + 1) if self.bounded else 0
        #: buckets whose filter changed since the last snapshot (pipeline/ledger_snapshot.py)
        self.dirty_filters: set[int] = set()
        #: digests the warehouse confirmed as seen in the window, for the batch being sequenced
        self.confirmed_seen: set[bytes] = set()
        self._swept_day = -1
        self.slot_now = -1
        #: The ledger partition's offset after the last committed entry known (0: none known).
        self.ledger_end = 0

    def _fresh(
        self, account: str, event_id: str, ingested_at: str, digest: bytes | None = None
    ) -> tuple[bytes, tuple[int, int]] | None:
        """The id's digest (`digest`, when `prepare` gave it) and exact-tier key, or None when
        the id was seen inside the window (the window is swept first when the bucket changed)."""
        key = self._key(ingested_at)
        if key[0] != self._swept_day:
            self._sweep(key[0])
        if digest is None:
            digest = id_digest(account, event_id)
        if self.has_seen(digest) or digest in self.confirmed_seen:
            return None
        return digest, key

    def _key(self, ts: str) -> tuple[int, int]:
        """The (bucket, slot) of a ledger timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
        if self.slot_ms == DAY_MS:
            day = epoch_day(ts)
            key = (day, day)
        else:
            ms = timestamp_ms_of(ts)
            key = (ms // self.bucket_ms, ms // self.slot_ms)
        if key[1] > self.slot_now:
            self.slot_now = key[1]
        return key

    def has_seen(self, digest: bytes) -> bool:
        """Whether the exact tier holds `digest` (the filters are asked per batch: `prepare`).
        The runs are searched for a digest `prepare` did not look up already."""
        for ids in self.exact.values():
            if digest in ids:
                return True
        if not self.runs:
            return False
        held = self._in_runs.get(digest)
        if held is None:
            held = any_holds(self._all_runs(), halves_of([digest]))[0]
        return held

    def seen_count(self) -> int:
        """Ids held exactly (the filters' ids are in `filter_count`)."""
        return sum(len(ids) for ids in self.exact.values()) + sum(
            len(run) for runs in self.runs.values() for run in runs
        )

    def exact_keys(self) -> set[tuple[int, int]]:
        """The (bucket, slot) keys the exact tier holds ids of."""
        return set(self.exact) | set(self.runs)

    def exact_ids(self, key: tuple[int, int]) -> set[bytes]:
        """Every digest the exact tier holds for `key`, its set's and its runs' (for tests)."""
        ids = set(self.exact.get(key, ()))
        for run in self.runs.get(key, ()):
            ids.update(run.digests())
        return ids

    def _all_runs(self) -> list[IdRun]:
        return [run for runs in self.runs.values() for run in runs]

    def filter_count(self) -> int:
        return sum(f.count for f in self.filters.values())

    def _remember(self, digest: bytes, key: tuple[int, int]) -> None:
        ids = self.exact.get(key)
        if ids is None:
            ids = self.exact[key] = set()
        ids.add(digest)
        self._touched[key] = self._batch

    def _remember_loaded(self, digest: bytes, key: tuple[int, int]) -> None:
        """`_remember` for a committed entry read back (recovery, `LedgerState.observe`): a
        slot's set is compacted as soon as it holds `RUN_IDS` ids, so a load holds no more in
        sets than sequencing does."""
        self._remember(digest, key)
        if len(self.exact[key]) >= RUN_IDS:
            self._compact_slot(key)

    def _compact(self) -> None:
        """Move into sorted runs the ids of the sets of the slots older than the current one,
        and of a set that holds `RUN_IDS` ids; merge the runs of a slot no longer written."""
        for key in [
            k for k, ids in self.exact.items() if k[1] < self.slot_now or len(ids) >= RUN_IDS
        ]:
            self._compact_slot(key)
        for key, runs in self.runs.items():
            if len(runs) > 1 and key[1] < self.slot_now:
                runs[:] = [IdRun.merged(runs)]

    def _compact_slot(self, key: tuple[int, int]) -> None:
        ids = self.exact.pop(key)
        runs = self.runs.get(key)
        if runs is None:
            runs = self.runs[key] = []
        runs.append(IdRun.of(ids))
        if key[1] < self.slot_now:
            runs[:] = [IdRun.merged(runs)]
        else:  # each run over twice the next: a few runs, each id merged a few times
            while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
                runs[-2:] = [IdRun.merged(runs[-2:])]
        self._in_runs = {}

    def _sweep(self, today: int) -> None:
        self._swept_day = today
        oldest = today - self.buckets
        for key in [k for k in self.exact_keys() if k[0] < oldest]:
            self.exact.pop(key, None)
            if self.runs.pop(key, None) is not None:
                self._in_runs = {}
            self.ends.pop(key, None)
            self._touched.pop(key, None)
        for day in [d for d in self.filters if d < oldest]:
            del self.filters[day]
            self.dirty_filters.add(day)

    # -- bounded mode -----------------------------------------------------------------------------

    def window_start_ms(self) -> int:
        """The start of the oldest bucket the window still holds (epoch ms): an entry ingested
        at or after it counts as seen."""
        return (self._swept_day - self.buckets) * self.bucket_ms

    def prepare(
        self, ids: list[tuple[str, str]], now: str
    ) -> tuple[list[bytes], list[tuple[str, str]]]:
        """Before `(account_id, event_id)` pairs are sequenced at `now` (a batch): compact the
        exact tier (`_compact`) and look the pairs' ids up in its runs for `has_seen`. Returns
        the pairs' digests (for `LedgerState.sequence`, so that no id is hashed twice), and the
        pairs not in the exact tier that a bucket's filter may hold (bounded mode): each must be
        confirmed (or not) against the warehouse before the batch is sequenced
        (`confirmed_seen`)."""
        self.confirmed_seen = set()
        self._in_runs = {}
        day = self._key(now)[0]
        if day != self._swept_day:
            self._sweep(day)
        self._compact()
        digests = [id_digest(a, e) for a, e in ids]
        if not digests or not (self.runs or self.filters):
            return digests, []
        halves = halves_of(digests)  # once, for the runs and the filters
        if self.runs:
            held = any_holds(self._all_runs(), halves)
            self._in_runs = dict(zip(digests, held, strict=True))
        if not self.filters:
            return digests, []
        maybe = any_contains(self.filters.values(), halves)
        return digests, [
            pair
            for pair, digest, hit in zip(ids, digests, maybe, strict=True)
            if hit and not self.has_seen(digest)
        ]

    def confirm(self, seen: Iterable[tuple[str, str]]) -> None:
        """Mark the pairs the warehouse holds inside the window as seen, for this batch."""
        self.confirmed_seen = {id_digest(a, e) for a, e in seen}

    def close_batch(self) -> int:
        """End the batch being sequenced (what follows belongs to the next): its number, for
        `committed` once its transaction has committed."""
        self._batch += 1
        return self._batch - 1

    def committed(self, ledger_end: int, batch: int | None = None) -> None:
        """The entries of the batches up to `batch` (None: every entry sequenced so far) are
        committed, and the ledger partition ends at `ledger_end` (after the last of them, or
        further). A slot that a later batch, still uncommitted, took entries in stays out of
        `seal` until that batch is committed too."""
        self.ledger_end = max(self.ledger_end, ledger_end)
        done = [k for k, b in self._touched.items() if batch is None or b <= batch]
        for key in done:
            self.ends[key] = self.ledger_end
            del self._touched[key]
        if batch is None:
            self.confirmed_seen = set()

    def seal(self, stored_through: int) -> int:
        """Move exact slots older than the exact tier's span, whose entries the warehouse holds
        (its loader stored the ledger partition below `stored_through`), into their bucket's
        filter; returns the ids moved. Nothing moves in exact mode."""
        if not self.bounded:
            return 0
        moved = 0
        newest = self.slot_now - self.exact_slots
        for key in sorted(self.exact_keys()):
            end = self.ends.get(key)
            if key[1] > newest or end is None or end > stored_through or key in self._touched:
                continue
            ids = self.exact.pop(key, None)
            runs = self.runs.pop(key, None)
            del self.ends[key]
            id_filter = self.filters.get(key[0])
            if id_filter is None:
                id_filter = self.filters[key[0]] = IdFilter(self.filter_bits)
            if ids:
                id_filter.add(list(ids))
                moved += len(ids)
            if runs is not None:
                self._in_runs = {}
                for run in runs:
                    id_filter.add_halves(run.halves())
                    moved += len(run)
            self.dirty_filters.add(key[0])
        return moved


def timestamp_ms_of(ts: str) -> int:
    """Epoch milliseconds of a ledger timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return _second_ms(ts[:19]) + int(ts[20:23])


@lru_cache(maxsize=1024)
def _second_ms(second: str) -> int:
    """Epoch milliseconds of `YYYY-MM-DDTHH:MM:SS` (cached: ingest times arrive in order)."""
    return (
        epoch_day(second) * DAY_MS
        + int(second[11:13]) * 3_600_000
        + int(second[14:16]) * 60_000
        + int(second[17:19]) * 1000
    )


def id_digest(account: str, event_id: str) -> bytes:
    """16 bytes standing for `(account, event_id)` in the dedup window.

    The exact tier holds ids as these digests, whose number grows with the event rate: about
    110 bytes per id in a set (against about 250 for the tuple of two strings it replaced), 16
    in a sorted run (`pipeline.id_runs`); the filters take their bit positions from it
    (`pipeline.id_filter`). Two different ids share a digest with probability about n^2 / 2^129 (1e-22 for a billion ids in
    the window).
    """
    return hashlib.blake2b(f"{account}\x00{event_id}".encode(), digest_size=16).digest()


def epoch_day(ts: str) -> int:
    """Days since 1970-01-01 of a `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamp."""
    return _epoch_day_of_date(ts[:10])


#: `_epoch_day_of_date`'s results (pipeline/memo.py: asked once an event, with a day's text).
_DAYS: Final = Memo(1024)
_EPOCH: Final = date(1970, 1, 1)


def _epoch_day_of_date(day: str) -> int:
    found = _DAYS.get(day)
    if found is MISSING:
        found = _DAYS.put(day, (date(int(day[0:4]), int(day[5:7]), int(day[8:10])) - _EPOCH).days)
    days: int = found
    return days
