"""`pipeline.memo.Memo`: a bounded memo of a pure function's results (what `lru_cache` was on the
per-event path). It holds any value, None included, tells a key it does not hold by `MISSING`,
and is emptied when full instead of dropping one value: the functions memoized give the same
answers either way (checked here on the ones the ingest path and the provider stage ask)."""

from __future__ import annotations

import pytest

from detectors import geo, networks
from pipeline import action_decoder, dedup_window, event
from pipeline.memo import MISSING, Memo


def test_holds_any_value_and_tells_a_missing_key() -> None:
    memo = Memo(4)
    assert memo.get("a") is MISSING
    assert memo.put("a", None) is None
    assert memo.get("a") is None  # None is a value held, not a miss
    assert memo.put(("x", 1), 0) == 0
    assert memo.get(("x", 1)) == 0
    assert memo.get("b") is MISSING
    assert len(memo) == 2


def test_emptied_when_full_then_filled_again() -> None:
    memo = Memo(3)
    for key in "abc":
        memo.put(key, key.upper())
    assert [memo.get(k) for k in "abc"] == ["A", "B", "C"]
    memo.put("d", "D")  # full: emptied first
    assert len(memo) == 1
    assert memo.get("a") is MISSING
    assert memo.get("d") == "D"
    memo.clear()
    assert len(memo) == 0


def test_a_memo_holds_at_least_one_value() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)


ADDRESSES = [
    "8.8.8.8",
    "81.2.69.160",
    "2a02:908::1",
    "::ffff:8.8.4.4",
    "10.0.0.1",
    "192.0.2.1",
    "fe80::1%eth0",
    "not an address",
    "",
    "8.8.8.8 ",
    "1.2.3.04",
]


@pytest.mark.parametrize("fill", [1, 2, 65536])
def test_memoized_functions_answer_as_their_bodies(fill: int) -> None:
    """Asked twice (from the memo the second time), and with memos so small that they empty on
    almost every call, each function gives what its body gives."""
    memos = [
        event._CANONICAL_IPS,
        geo._PLACES,
        networks._NETWORKS,
        networks._ADDRESS_KEYS,
        networks._TABLES,
        dedup_window._DAYS,
        action_decoder._SENSITIVE_ACCOUNTS,
        action_decoder._VALID_DAYS,
    ]
    limits = [m.limit for m in memos]
    try:
        for m in memos:
            m.clear()
            m.limit = fill
        for _ in range(2):
            for ip in ADDRESSES:
                assert event.canonical_ip(ip) == event._canonical_ip_of(ip)
                assert geo.lookup(ip) == geo._lookup(ip)
                assert networks.network(ip) == networks._network_of(ip)
                assert networks._address_key(ip) == networks._address_key_of(ip)
            for allowlist in [("8.8.8.0/24",), ("10.0.0.0/8", "2a02:908::/32"), ()]:
                assert networks._compiled(allowlist) == networks._compile(allowlist)
            for day in ["2026-12-07", "2026-02-29", "2024-02-29", "1969-12-31", "2201-01-01"]:
                assert action_decoder._valid_day(day) == action_decoder._is_day(day)
                if action_decoder._is_day(day):
                    assert (
                        dedup_window._epoch_day_of_date(day)
                        == (dedup_window.date.fromisoformat(day) - dedup_window._EPOCH).days
                    )
            for account in ["A0001SELLER", "4111111111111111", "jane@example.com"]:
                assert action_decoder._account_holds_sensitive(account) == (
                    action_decoder.find_sensitive(account) is not None
                )
    finally:
        for m, limit in zip(memos, limits, strict=True):
            m.limit = limit
            m.clear()
