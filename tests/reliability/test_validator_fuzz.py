"""Fuzz of the validator: whatever arrives, `parse_action` returns a valid event or raises `Rejected`.

Eight strategies (random JSON, deep nesting, huge strings, invalid UTF-8, numbers out of range,
time zones and offsets, IPv6 forms, near-valid events with fields mutated). Each runs twice: a
quick variant in the default suite, and a long one (marked `reliability`, run by `make
reliability`) with 12,100 cases in all. The contract checked on every case is
`tests.unit.test_event._check_normalize_contract`: only `Rejected` with a reason from REASONS,
an accepted event passes the gate again unchanged, bytes and documents get the same verdict.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.event import REASONS, Rejected, canonical, parse_action
from pipeline.masking import Masker
from pipeline.sensitive import find_sensitive
from tests.unit.test_event import (
    RICH,
    _check_normalize_contract,
    json_values,
    minimal,
    near_valid_docs,
    variant,
)

MASKER = Masker("fuzz")


def check_bytes(raw: bytes) -> None:
    """The gate on raw message bytes: an event that passes again, or a known reason."""
    try:
        out = parse_action(raw)
    except Rejected as exc:
        assert exc.reason in REASONS, exc.reason
        return
    assert parse_action(canonical(out)) == out
    masked = MASKER.mask_event(out)  # masking never breaks on what the gate lets through
    # the event id stays as it is, unless it holds a card, IBAN, e-mail or phone: masked whole
    event_id = out["event_id"]
    expected = MASKER.mask_text(event_id) if find_sensitive(event_id) else event_id
    assert orjson.loads(canonical(masked))["event_id"] == expected


def check_doc(doc: Any) -> None:
    _check_normalize_contract(doc)
    try:
        raw = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    check_bytes(raw)


# -- strategies ---------------------------------------------------------------------------------

_BASE = minimal("listing.update")


def _nest(depth: int, kind: str) -> bytes:
    opened, closed = {"list": (b"[", b"]"), "dict": (b'{"a":', b"}")}[kind]
    return opened * depth + b"1" + closed * depth


deep_nesting = st.builds(
    lambda depth, kind, where: (
        orjson.dumps(variant(RICH, **{where: "__D__"})).replace(b'"__D__"', _nest(depth, kind), 1)
        if where != "top"
        else _nest(depth, kind)
    ),
    st.integers(min_value=1, max_value=5000),
    st.sampled_from(["list", "dict"]),
    st.sampled_from(["top", "changes", "policy", "resource", "actor", "source__ip"]),
)

huge_strings = st.builds(
    lambda size, char, field: orjson.dumps(variant(RICH, **{field: char * size})),
    st.integers(min_value=100, max_value=200_000),
    st.sampled_from(["a", "é", "\u20ac", "\U0001f600", "0", "\\", '"', "\x00"]),
    st.sampled_from(
        [
            "event_id",
            "account_id",
            "operation",
            "actor__principal_id",
            "source__user_agent",
            "resource__id",
        ]
    ),
)

invalid_utf8 = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda junk, at: (lambda good: good[:at] + junk + good[at:])(orjson.dumps(RICH)),
        st.sampled_from(
            [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82"]
        ),
        st.integers(min_value=0, max_value=400),
    ),
)

_big_numbers = st.sampled_from(
    [
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"9007199254740993",
        b"123456789012345678901234567890",
        b"0.1e309",
        b"-0",
        b"1E+2",
    ]
) | st.integers(min_value=-(2**200), max_value=2**200).map(lambda n: str(n).encode())
_NUMBER_SLOTS = [
    variant(RICH, changes__1__new="__N__"),
    variant(minimal("funds.refund"), amount__value="__N__"),
    variant(minimal("permission.grant"), grant__max_price_change_pct="__N__"),
    variant(minimal("policy.update"), policy__rate_limit_per_min="__N__"),
    variant(minimal("policy.update"), policy__extra="__N__"),
    variant(_BASE, occurred_at="__N__"),
    variant(_BASE, event_id="__N__"),
    variant(RICH, changes__0__old="__N__"),
]
numbers_out_of_range = st.builds(
    lambda number, doc: orjson.dumps(doc).replace(b'"__N__"', number),
    _big_numbers,
    st.sampled_from(_NUMBER_SLOTS),
)


_offsets = st.builds(
    lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
    st.sampled_from("+-"),
    st.integers(0, 30),
    st.integers(0, 99),
) | st.sampled_from(["Z", "z", "", "+0100", "+01", "UTC", "+01:00:00", "-00:00", "+14:00", "GMT+1"])
time_zones = st.one_of(
    st.builds(
        lambda y, mo, d, h, mi, s, frac, off, sep: variant(
            _BASE, occurred_at=f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
        ),
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".1", ".123", ".123456789", ",5"]),
        _offsets,
        st.sampled_from(["T", "t", " ", "_"]),
    ),
    st.builds(
        lambda tz: variant(
            minimal("permission.grant"),
            grant__active_hours={"tz": tz, "start": "08:00", "end": "18:00"},
        ),
        st.timezone_keys()
        | st.text(max_size=40)
        | st.sampled_from(
            [
                "America",
                "Etc",
                "../UTC",
                "/etc/localtime",
                "UTC\x00",
                "Europe/Berlin ",
                "posixrules",
                "",
            ]
        ),
    ),
)


def _ipv6_forms(address: ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    text = address.exploded
    return st.sampled_from(
        [
            str(address),
            text,
            text.upper(),
            f"[{address}]",
            f"{address}%eth0",
            f"{address}/64",
            str(address).replace("::", ":::"),
            text.replace(":", "-"),
            f"::ffff:{ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)}",
            f" {address}",
            f"{address}\n",
            "::",
            "::1",
            "0:0:0:0:0:0:0:1",
            "1::2::3",
            "fe80::1%25eth0",
        ]
    )


ipv6_forms = st.ip_addresses(v=6).flatmap(_ipv6_forms).map(
    lambda ip: variant(RICH, source__ip=ip)
) | st.builds(
    lambda ip: variant(minimal("permission.grant"), grant__ip_allowlist=[ip]),
    st.ip_addresses(v=6).flatmap(_ipv6_forms),
)

random_json = st.one_of(
    json_values, st.dictionaries(st.sampled_from(sorted(RICH)), json_values, max_size=10)
)

#: name -> (strategy, bytes or documents, quick examples, full examples)
STRATEGIES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None], int, int]] = {
    "random_json": (random_json, check_doc, 150, 2500),
    "deep_nesting": (deep_nesting, check_bytes, 40, 600),
    "huge_strings": (huge_strings, check_bytes, 30, 500),
    "invalid_utf8": (invalid_utf8, check_bytes, 150, 2000),
    "numbers_out_of_range": (numbers_out_of_range, check_bytes, 80, 1000),
    "time_zones": (time_zones, check_doc, 100, 1500),
    "ipv6_forms": (ipv6_forms, check_doc, 100, 1500),
    "near_valid": (near_valid_docs, check_doc, 150, 2500),
}
FULL_CASES = sum(full for _, _, _, full in STRATEGIES.values())


#: name -> cases checked in this process (hypothesis may stop early on a small search space).
RAN: dict[str, int] = {}


def _fuzz(name: str, examples: int) -> Callable[[], None]:
    strategy, check, _, _ = STRATEGIES[name]
    RAN[name] = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    @given(strategy)
    def run(case: Any) -> None:
        RAN[name] += 1
        check(case)

    return run


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_validator_fuzz_quick(name: str) -> None:
    _fuzz(name, STRATEGIES[name][2])()


@pytest.mark.reliability
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_validator_fuzz_full(name: str) -> None:
    _fuzz(name, STRATEGIES[name][3])()
    print(f"{name}: {RAN[name]} cases")
    assert RAN[name] >= STRATEGIES[name][3]


def test_full_run_has_at_least_ten_thousand_cases() -> None:
    assert FULL_CASES >= 10_000


@pytest.mark.parametrize("event_id", ["2000-01-01T00:00:01.000001-10:00", "A4244030000004"])
def test_found_examples_keep_their_event_id(event_id: str) -> None:
    """Cases the full run once found masked (a time read as a phone, a seller id as a card)."""
    doc = minimal("account.contact_change")
    doc["event_id"] = event_id
    out = parse_action(orjson.dumps(doc))
    assert MASKER.mask_event(out)["event_id"] == event_id
    check_doc(doc)


@pytest.mark.parametrize("where", ["policy", "origin"])
@pytest.mark.parametrize("depth", [254, 247, 246])
def test_found_deep_nesting_is_refused_or_written(where: str, depth: int) -> None:
    """The full run once found a policy 254 objects deep that the gate let through and the
    canonical form could not write (orjson stops at 255 levels): every depth either is refused
    or is written inside the event, with NESTING_HEADROOM levels to spare."""
    check_bytes(
        orjson.dumps(variant(RICH, **{where: "__D__"})).replace(b'"__D__"', _nest(depth, "dict"), 1)
    )
