"""Sorted runs of 16-byte id digests: the compact form of the dedup window's exact tier.

The exact tier (pipeline/dedup_window.py) held every id of a slot as a `bytes` object in a Python
set, about 110 bytes per id (the object, and the set's entry and spare room). An `IdRun` holds the
same digests as two numpy arrays of 64-bit halves, 16 bytes per id, sorted by the first half, and
answers membership for a whole batch of digests at once (`contains`, a binary search per digest
with `np.searchsorted`): the window compacts a slot's set into runs (`DedupWindow.prepare`), and
looks up the batch's ids in them once before the batch is sequenced.

Membership is exact: both halves, the full 16 bytes, are compared. Digests that share a first
half (about one pair in 2^64 / n) are all found, after the binary search, by looking at the
entries that follow it.

The halves are the digest's bytes read as little-endian 64-bit integers (`'<u8'`), so
`to_bytes` gives back each digest's own 16 bytes (the ledger snapshot's format,
pipeline/ledger_snapshot.py) and the Bloom filters take the same halves
(`IdFilter.add_halves`, pipeline/id_filter.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
HALF = np.dtype("<u8")


def halves_of(digests: Sequence[bytes] | Collection[bytes]) -> U64:
    """`digests` (16 bytes each) as an (n, 2) array of their little-endian 64-bit halves."""
    data = b"".join(digests)
    if len(data) != 16 * len(digests):
        raise ValueError("every id digest is 16 bytes")
    return np.frombuffer(data, dtype=HALF).reshape(-1, 2)


class IdRun:
    """An immutable sorted set of 16-byte digests (the module says how)."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi: U64, lo: U64) -> None:
        #: the first halves, ascending; `lo[i]` is the second half of the digest of `hi[i]`
        self.hi = hi
        self.lo = lo

    @classmethod
    def of(cls, digests: Collection[bytes]) -> IdRun:
        return cls.from_halves(halves_of(digests))

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> IdRun:
        """A run of the digests laid end to end in `data` (any order)."""
        if len(data) % 16:
            raise ValueError("id digests are 16 bytes each")
        return cls.from_halves(np.frombuffer(data, dtype=HALF).reshape(-1, 2))

    @classmethod
    def from_halves(cls, halves: U64) -> IdRun:
        order = np.argsort(halves[:, 0], kind="stable")
        # fancy indexing copies: the run keeps no reference to the caller's buffer
        return cls(halves[order, 0], halves[order, 1])

    @classmethod
    def merged(cls, runs: Sequence[IdRun]) -> IdRun:
        """One run holding the digests of `runs` (a stable sort of sorted runs is a merge)."""
        if len(runs) == 1:
            return runs[0]
        hi = np.concatenate([r.hi for r in runs])
        lo = np.concatenate([r.lo for r in runs])
        order = np.argsort(hi, kind="stable")
        return cls(hi[order], lo[order])

    def __len__(self) -> int:
        return int(self.hi.size)

    @property
    def nbytes(self) -> int:
        return int(self.hi.nbytes + self.lo.nbytes)

    def contains(self, halves: U64) -> npt.NDArray[np.bool_]:
        """For each digest of `halves` ((n, 2), as `halves_of` gives): whether the run holds it."""
        n = self.hi.size
        if not n or not halves.shape[0]:
            return np.zeros(halves.shape[0], dtype=np.bool_)
        q_hi, q_lo = halves[:, 0], halves[:, 1]
        at = np.searchsorted(self.hi, q_hi)
        clipped = np.minimum(at, n - 1)
        same_hi = self.hi[clipped] == q_hi
        found: npt.NDArray[np.bool_] = same_hi & (self.lo[clipped] == q_lo)
        # A first half several entries share: the digest may be any of them (they follow `at`).
        for i in np.flatnonzero(same_hi & ~found).tolist():
            j, h, low = int(at[i]) + 1, q_hi[i], q_lo[i]
            while j < n and self.hi[j] == h:
                if self.lo[j] == low:
                    found[i] = True
                    break
                j += 1
        return found

    def halves(self) -> U64:
        """The digests as an (n, 2) array of halves (in the run's order)."""
        return np.stack((self.hi, self.lo), axis=1)

    def to_bytes(self) -> bytes:
        """The digests' own 16 bytes each, laid end to end (in the run's order)."""
        return self.halves().astype(HALF, copy=False).tobytes()

    def digests(self) -> list[bytes]:
        data = self.to_bytes()
        return [data[i : i + 16] for i in range(0, len(data), 16)]


def any_holds(runs: Iterable[IdRun], halves: U64) -> list[bool]:
    """For each digest of `halves`: whether any of `runs` holds it."""
    found = np.zeros(halves.shape[0], dtype=np.bool_)
    for run in runs:
        found |= run.contains(halves)
    return [bool(x) for x in found.tolist()]
