"""`find_sensitive` with its patterns gated on the text's shape (`pipeline.sensitive._shape`)
gives what it gave before (tests/unit/sensitive_reference.py), for identifiers and free text:
on texts built from the pieces its patterns look for (digit groups and separators, card
numbers, IBANs, phone numbers, UUIDs, times, e-mail addresses, fullwidth digits and format
characters), on any text, and on the event ids of the simulator, the gateway and the polling
and notification sources. `_is_phone`'s early answer likewise, on phone-like runs."""

from __future__ import annotations

import hashlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.sensitive import _is_phone, _shape, find_sensitive
from tests.unit import sensitive_reference as reference


def _luhn(body: str) -> str:
    """`body` with the check digit that makes it pass the Luhn check."""
    total = 0
    for i, char in enumerate(reversed(body + "0")):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _grouped(number: str, sep: str, sizes: tuple[int, ...]) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(number[at : at + size])
        at += size
    if at < len(number):
        out.append(number[at:])
    return sep.join(part for part in out if part)


cards = st.builds(
    lambda prefix, body, sep, sizes: _grouped(_luhn(prefix + body), sep, sizes),
    st.sampled_from(["4", "51", "37", "36", "6011", "2221", "2720", "30", "34"]),
    st.text(alphabet="0123456789", min_size=8, max_size=15),
    st.sampled_from(["", " ", "-", ".", "/", "  "]),
    st.sampled_from([(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (19,), (3, 3)]),
)
phones = st.one_of(
    st.builds(
        lambda plus, cc, rest, sep: f"{plus}{cc}{sep}{rest}",
        st.sampled_from(["+", "00", "", "("]),
        st.integers(1, 999).map(str),
        st.text(alphabet="0123456789", min_size=5, max_size=13),
        st.sampled_from([" ", "-", ".", "/", ") ", " (", ""]),
    ),
    st.sampled_from(
        [
            "(212) 555-0123",
            "212.555.0123",
            "1-212-555-0123",
            "+49 30 1234567",
            "030 1234 5678",
            "0049 30 123456",
            "089/123456",
            "0171-1234567",
            "01.02.2026",
            "10.0.0.1",
            "AA-010-123456",
        ]
    ),
)
ibans = st.sampled_from(
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82-WEST-1234-5698-7654-32",
        "FR1420041010050500013M02606",
        "NO9386011117947",
        "de89.3704.0044.0532.0130.00",
        "DE89370400440532013001",
    ]
)
pieces = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=20),
    st.text(alphabet="0123456789abcdefXYZ .-/()+@:_T", max_size=10),
    st.sampled_from(
        [" ", "-", ".", "/", "(", ")", "+", "@", ":", "_", "0", "00", "(0", "a", "Z", "T"]
    ),
    st.sampled_from(["\uff14\uff11", "\u200b", "\u00c4", "\u0663", "\u00ad", "\ud800"]),
    st.uuids().map(str),
    st.sampled_from(
        ["2026-12-05T12:00:00.000Z", "2026-12-05 12:00", "05.12.2026", "1733400000000"]
    ),
    st.sampled_from(["a@b.co", "x.y@example.org", "@", "a@b"]),
    cards,
    phones,
    ibans,
)
texts = st.lists(pieces, max_size=8).map("".join)


#: Values at the edge of each gate (each found by the reference): a card of 13 digits in a row,
#: one in 4-6-5 groups, a phone whose only separators are parentheses, one with `+` alone (and
#: one of its shortest: 8 digits), a
#: North American number, an IBAN with its letters and digits, and their near misses.
EDGES = [
    "4222222222222",
    "id 4222222222222 x",
    "3714-496353-98431",
    "(030(1234567",
    "x (030(1234567",
    "+4930123456789",
    "+12345678",
    "212-555-0123",
    "GB82WEST12345698765432",
    "422222222222",
    "(030)",
    "212-555-012",
    "+1234567",
]


@settings(max_examples=3000, deadline=None)
@given(texts, st.booleans())
@example("", False)
def test_same_as_before_on_built_texts(text: str, free_text: bool) -> None:
    assert find_sensitive(text, free_text=free_text) == reference.find_sensitive(
        text, free_text=free_text
    )


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=60), st.booleans())
def test_same_as_before_on_any_text(text: str, free_text: bool) -> None:
    assert find_sensitive(text, free_text=free_text) == reference.find_sensitive(
        text, free_text=free_text
    )


@settings(max_examples=500, deadline=None)
@given(st.uuids(), st.binary(min_size=1, max_size=64), st.integers(0, 10**12))
def test_same_as_before_on_the_sources_event_ids(uuid: object, body: bytes, n: int) -> None:
    digest = hashlib.sha256(body).hexdigest()
    ids = [
        f"gw-{uuid.hex}",  # type: ignore[attr-defined]
        f"gw-suspend-{uuid.hex}",  # type: ignore[attr-defined]
        f"amzn-p-{digest[:40]}",
        f"amzn-u-{digest[:40]}",
        f"amzn-u-{digest[:40]}.{n % 7 + 2}",
        f"sim-{n % 100}-{n:09d}",
        str(uuid),
    ]
    for event_id in ids:
        assert find_sensitive(event_id) == reference.find_sensitive(event_id), event_id


runs = st.builds(
    lambda head, groups, seps: (
        head + "".join(g + s for g, s in zip(groups, seps + [""] * len(groups), strict=False))
    ),
    st.sampled_from(["", "+", "(", "0", "00", "(0", "1"]),
    st.lists(st.text(alphabet="0123456789", min_size=1, max_size=6), min_size=1, max_size=5),
    st.lists(st.sampled_from([" ", ".", "-", "/", ")", ") ", " (", "("]), max_size=5),
)


@settings(max_examples=2000, deadline=None)
@given(runs)
def test_phone_runs_same_as_before(run: str) -> None:
    assert _is_phone(run) == reference.is_phone(run)


def test_the_shape_of_a_text() -> None:
    # digits, ASCII letters, ` .-`, `/)`, and everything else (each byte of its UTF-8)
    assert _shape("gw-0123 a/)(.") == b"aasddddsattxs"
    assert _shape("\u00c4\uff10") == b"xxxxx"  # no byte of another character is a digit
    assert _shape("\ud800") == b"xxx"  # a lone surrogate, encoded as it is


def test_same_as_before_at_the_edges_of_the_gates() -> None:
    for value in EDGES:
        for free_text in (False, True):
            assert find_sensitive(value, free_text=free_text) == reference.find_sensitive(
                value, free_text=free_text
            ), value
    assert sum(reference.find_sensitive(value) is not None for value in EDGES) == 9


def test_an_iban_where_a_word_starts_and_where_none_does() -> None:
    """The IBAN gate asks for two letters and two digits where a word starts: at the start, or
    after anything that is no ASCII letter or digit (a separator, a bracket, a non-ASCII
    letter), as `_IBAN_START`'s look-behind does."""
    iban = "DE89370400440532013000"
    found = [
        f"{before}{iban}" for before in ("", " ", "-", ".", "/", ")", "(", "_", "\u00c4", "\u200b")
    ]
    inside = [f"{before}{iban}" for before in ("x", "7", "ab", "Z9")]
    for value in found + inside + ["gw-de89370400440532013000", "gw-0de89370400440532013000"]:
        for free_text in (False, True):
            assert find_sensitive(value, free_text=free_text) == reference.find_sensitive(
                value, free_text=free_text
            ), value
    assert all(find_sensitive(value) == "an IBAN" for value in found)
    assert not any(find_sensitive(value) == "an IBAN" for value in inside)


def test_what_each_shape_gate_lets_through_is_still_found() -> None:
    # one value per pattern the shape gates: each reaches its pattern and is found
    assert find_sensitive("card 4111 1111 1111 1111", free_text=True) == "a card number"
    assert find_sensitive("4111111111111111") == "a card number"
    assert find_sensitive("call +49 30 1234567") == "a phone number"
    assert find_sensitive("(212) 555-0123") == "a phone number"
    assert find_sensitive("212.555.0123") == "a phone number"
    assert find_sensitive("030 1234 5678") == "a phone number"
    assert find_sensitive("DE89370400440532013000") == "an IBAN"
    # and ids that hold none of them stay ids
    assert find_sensitive("gw-0123456789abcdef0123456789abcdef") is None
    assert find_sensitive("sim-99-000000001") is None
