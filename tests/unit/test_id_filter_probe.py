"""`pipeline.id_filter.any_contains` (each filter asked its first bit for the whole batch, the
other bits only where that one is set) answers what asking every filter `IdFilter.contains`
does: filters of different sizes, numbers of bit positions and loads, digests added to some of
them and digests added to none."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.id_filter import TWO_ROUNDS, IdFilter, any_contains
from pipeline.id_runs import halves_of


def _digest(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "little"), digest_size=16).digest()


@settings(max_examples=150, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(st.integers(6, 14), st.integers(1, 7), st.integers(0, 3000)),
        min_size=0,
        max_size=5,
    ),
    first=st.integers(0, 6_000),
    count=st.integers(0, 700),  # both sides of `TWO_ROUNDS`
)
def test_any_contains_answers_as_every_filter_does(
    shapes: list[tuple[int, int, int]], first: int, count: int
) -> None:
    filters = []
    start = 0
    for log_bits, hashes, added in shapes:
        id_filter = IdFilter(1 << log_bits, hashes)
        id_filter.add([_digest(n) for n in range(start, start + added)])
        start += added // 2  # filters share some digests
        filters.append(id_filter)
    digests = [_digest(n) for n in range(first, first + count)]
    expected = np.zeros(len(digests), dtype=np.bool_)
    for id_filter in filters:
        if digests:
            expected |= id_filter.contains(digests)
    assert any_contains(filters, halves_of(digests)) == expected.tolist()


def test_a_batch_asked_in_one_round_and_in_two_is_answered_alike() -> None:
    filters = [IdFilter(1 << bits, hashes) for bits, hashes in ((12, 5), (14, 3), (12, 5))]
    for n, id_filter in enumerate(filters):
        id_filter.add([_digest(i) for i in range(n * 400, n * 400 + 600)])
    digests = [_digest(i) for i in range(0, 3_000, 3)]
    assert len(digests) >= TWO_ROUNDS
    expected = [any(f.contains([d])[0] for f in filters) for d in digests]
    assert any_contains(filters, halves_of(digests)) == expected
    assert any_contains(filters, halves_of(digests[:50])) == expected[:50]
    assert 0 < sum(expected) < len(expected)


def test_a_full_filter_and_an_empty_one() -> None:
    full = IdFilter(64, 3)
    full.array[:] = 255
    empty = IdFilter(1 << 12, 5)
    digests = [_digest(n) for n in range(50)]
    assert any_contains([empty], halves_of(digests)) == [False] * 50
    assert any_contains([empty, full], halves_of(digests)) == [True] * 50
    assert any_contains([], halves_of(digests)) == [False] * 50
    assert any_contains([full], halves_of([])) == []
