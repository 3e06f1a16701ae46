"""A Bloom filter over the 16-byte id digests of the dedup window (`dedup_window.id_digest`).

The cold tier of the dedup window (pipeline/dedup_window.py, bounded mode): ids older than the
exact tier are kept only as bits. A filter answers "maybe seen" or "certainly not seen"; a
"maybe" is never acted on alone, it is confirmed against the warehouse
(streams/dedup_confirm.py). Its size is fixed when it is made, so memory does not grow with the
event rate; a fuller filter answers "maybe" more often (`false_positive_rate`), which costs
confirmations, not correctness.

The digests are already uniform (BLAKE2b), so the `hashes` bit positions are derived from them by
double hashing (Kirsch and Mitzenmacher): position i = (h1 + i * h2) mod bits, h1 and h2 the two
halves of the digest. Membership and insertion are vectorized over a batch with numpy.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from pipeline.id_runs import halves_of

#: Bit positions per id. 5 is near the best for 7-10 bits per id (the filter's design load).
HASHES = 5


class IdFilter:
    """A fixed-size Bloom filter of `bits` bits (a power of two) over 16-byte digests."""

    def __init__(self, bits: int, hashes: int = HASHES) -> None:
        if bits < 64 or bits & (bits - 1):
            raise ValueError(
                f"an id filter's size must be a power of two of at least 64 bits, not {bits}"
            )
        self.bits = bits
        self.hashes = hashes
        self.count = 0
        self.array: npt.NDArray[np.uint8] = np.zeros(bits // 8, dtype=np.uint8)

    def positions(self, halves: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """The bit positions of each digest of `halves` ((n, 2): `id_runs.halves_of`)."""
        steps = np.arange(self.hashes, dtype=np.uint64)
        mask = np.uint64(self.bits - 1)
        with np.errstate(over="ignore"):  # the sums wrap modulo 2**64 by design
            positions: npt.NDArray[np.uint64] = (
                halves[:, :1] + steps[None, :] * (halves[:, 1:] | np.uint64(1))
            ) & mask
        return positions

    def add(self, digests: Sequence[bytes]) -> None:
        if digests:
            self.add_halves(halves_of(digests))

    def add_halves(self, halves: npt.NDArray[np.uint64]) -> None:
        """`add` for digests given as their halves (an `IdRun`'s, pipeline/id_runs.py)."""
        if not halves.shape[0]:
            return
        positions = self.positions(halves).ravel()
        np.bitwise_or.at(
            self.array,
            (positions >> np.uint64(3)).astype(np.intp),
            (np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8)),
        )
        self.count += int(halves.shape[0])

    def contains(self, digests: Sequence[bytes]) -> npt.NDArray[np.bool_]:
        """For each digest: True if it may have been added, False if it certainly was not."""
        if not digests:
            return np.zeros(0, dtype=np.bool_)
        positions = self.positions(halves_of(digests))
        bytes_ = self.array[(positions >> np.uint64(3)).astype(np.intp)]
        bits = (bytes_ >> (positions & np.uint64(7)).astype(np.uint8)) & np.uint8(1)
        return np.asarray(bits.all(axis=1), dtype=np.bool_)

    def false_positive_rate(self) -> float:
        """The expected rate of "maybe" for an id never added, at the filter's current load."""
        return (1.0 - math.exp(-self.hashes * self.count / self.bits)) ** self.hashes

    def to_bytes(self) -> bytes:
        """The filter, compressed (a sparse filter compresses well), with its count."""
        head = f"{self.bits} {self.hashes} {self.count}\n".encode()
        return head + zlib.compress(self.array.tobytes(), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> IdFilter:
        head, _, body = data.partition(b"\n")
        bits, hashes, count = (int(x) for x in head.split())
        made = cls(bits, hashes)
        array = np.frombuffer(zlib.decompress(body), dtype=np.uint8)
        if array.size != bits // 8:
            raise ValueError(f"an id filter of {bits} bits holds {array.size} bytes")
        made.array = array.copy()
        made.count = count
        return made


#: From this many digests in a batch on, `any_contains` asks each filter for the first bit first.
TWO_ROUNDS = 256


def any_contains(filters: Iterable[IdFilter], halves: npt.NDArray[np.uint64]) -> list[bool]:
    """For each digest of `halves` ((n, 2): `id_runs.halves_of`): whether any of `filters` may
    hold it, as `IdFilter.contains` of each filter answers.

    A digest's bit positions are the same in every filter of one size (and number of
    positions): they are computed once per batch. For an id a filter does not hold, its first
    bit is set only as often as the filter is full: so each filter is asked that bit for the
    whole batch first, and only the digests whose first bit is set are asked the others. Each
    probe is a cache miss somewhere in megabytes of filter, and a worker that has run for a week
    asks eight filters per batch (bench/dedup_prepare.py)."""
    n = halves.shape[0]
    maybe = np.zeros(n, dtype=np.bool_)
    if not n:
        return []
    # every digest's bit positions (as bytes of the array, and a mask in the byte), computed once
    # per batch for all the filters of one size and number of positions
    probes: dict[tuple[int, int], tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]] = {}
    for id_filter in filters:
        shape = (id_filter.bits, id_filter.hashes)
        probe = probes.get(shape)
        if probe is None:
            positions = id_filter.positions(halves)
            probe = probes[shape] = (
                (positions >> np.uint64(3)).astype(np.intp),
                np.left_shift(np.uint8(1), (positions & np.uint64(7)).astype(np.uint8)),
            )
        at, mask = probe
        array = id_filter.array
        if n < TWO_ROUNDS:  # a few digests: every bit at once costs fewer calls into numpy
            maybe |= ((array[at] & mask) != 0).all(axis=1)
            continue
        candidates = np.flatnonzero(array[at[:, 0]] & mask[:, 0])
        if candidates.size and id_filter.hashes > 1:
            rest = (array[at[candidates, 1:]] & mask[candidates, 1:]) != 0
            candidates = candidates[rest.all(axis=1)]
        maybe[candidates] = True
    return [bool(x) for x in maybe.tolist()]


def filter_bits(megabytes: float, filters: int) -> int:
    """The largest power-of-two size in bits of each of `filters` filters sharing `megabytes`."""
    per_filter = max(64, int(megabytes * 8 * 1024 * 1024 / max(1, filters)))
    return 1 << (per_filter.bit_length() - 1)
