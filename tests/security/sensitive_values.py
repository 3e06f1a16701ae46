"""Generated bank and personal data, in the shapes people write them (hypothesis strategies).

Card numbers are valid (issuer prefix, Luhn check digit) and written unbroken, in groups of four
split by spaces or dashes, 4-6-5 for Amex, or in fullwidth digits; IBANs are valid (registered
length, mod-97 check digits) and written compact, in groups of four split by spaces, dots or
dashes, or in lower case; e-mail addresses; phone numbers in international (+, 00), North
American and national (leading 0) forms.
"""

from __future__ import annotations

from hypothesis import strategies as st

_FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))

#: (issuer prefix, length)
_CARD_PREFIXES = [
    ("4", 16),
    ("4", 13),
    ("4", 19),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3528", 16),
    ("36", 14),
    ("62", 16),
    ("62", 19),
    ("2200", 16),
]


def luhn_complete(body: str) -> str:
    """`body` with the check digit that makes it pass the Luhn check."""
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def grouped(text: str, sep: str, sizes: tuple[int, ...] = ()) -> str:
    parts, i = [], 0
    for size in sizes or (4,) * ((len(text) + 3) // 4):
        parts.append(text[i : i + size])
        i += size
    return sep.join(p for p in parts if p)


@st.composite
def card_digits(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(_CARD_PREFIXES))
    rest = draw(
        st.text(
            alphabet="0123456789",
            min_size=length - len(prefix) - 1,
            max_size=length - len(prefix) - 1,
        )
    )
    return luhn_complete(prefix + rest)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, its digits)."""
    digits = draw(card_digits())
    style = draw(
        st.sampled_from(["compact", "spaced", "dashed", "fullwidth", "fullwidth_spaced", "amex"])
    )
    if style == "compact":
        text = digits
    elif style == "spaced":
        text = grouped(digits, " ")
    elif style == "dashed":
        text = grouped(digits, "-")
    elif style == "fullwidth":
        text = digits.translate(_FULLWIDTH)
    elif style == "fullwidth_spaced":
        text = grouped(digits, " ").translate(_FULLWIDTH)
    else:
        text = grouped(digits, " ", (4, 6, 5)) if len(digits) == 15 else grouped(digits, " ")
    return text, digits


#: country -> the shape of its account part: d digit, a capital letter, c either.
_BBAN = {
    "DE": "d" * 18,
    "FR": "d" * 10 + "c" * 11 + "dd",
    "GB": "aaaa" + "d" * 14,
    "NL": "aaaa" + "d" * 10,
    "ES": "d" * 20,
    "IT": "a" + "d" * 10 + "c" * 12,
    "BE": "d" * 12,
    "PL": "d" * 24,
    "SE": "d" * 20,
    "CH": "d" * 5 + "c" * 12,
    "AT": "d" * 16,
    "IE": "aaaa" + "d" * 14,
    "NO": "d" * 11,
    "SA": "dd" + "c" * 18,
}
_ALPHABET = {
    "d": "0123456789",
    "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
}


def iban_check_digits(country: str, bban: str) -> str:
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{98 - number % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, compact upper case)."""
    country = draw(st.sampled_from(sorted(_BBAN)))
    bban = "".join(draw(st.sampled_from(_ALPHABET[k])) for k in _BBAN[country])
    compact = country + iban_check_digits(country, bban) + bban
    style = draw(st.sampled_from(["compact", "spaced", "dotted", "dashed", "lower"]))
    text = {
        "compact": compact,
        "spaced": grouped(compact, " "),
        "dotted": grouped(compact, "."),
        "dashed": grouped(compact, "-"),
        "lower": compact.lower(),
    }[style]
    return text, compact


emails = st.builds(
    lambda local, host, tld: f"{local}@{host}.{tld}",
    st.from_regex(r"[a-z][a-z0-9+_-]{1,12}(\.[a-z0-9]{1,6})?", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{1,10}[a-z0-9]", fullmatch=True),
    st.sampled_from(["com", "de", "co.uk", "example", "fr", "io"]),
)


@st.composite
def phones(draw: st.DrawFn) -> tuple[str, str]:
    """(as written, its digits as dialled internationally or nationally)."""
    style = draw(
        st.sampled_from(["plus", "plus_compact", "double_zero", "nanp", "nanp_plus", "national"])
    )
    if style.startswith("nanp"):
        area = draw(st.sampled_from("23456789")) + draw(
            st.text("0123456789", min_size=2, max_size=2)
        )
        exchange = draw(st.sampled_from("23456789")) + draw(
            st.text("0123456789", min_size=2, max_size=2)
        )
        line = draw(st.text("0123456789", min_size=4, max_size=4))
        form = draw(st.sampled_from(["({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "{a} {e} {l}"]))
        text = form.format(a=area, e=exchange, l=line)
        return ("+1 " + text if style == "nanp_plus" else text), area + exchange + line
    if style == "national":
        area = (
            "0"
            + draw(st.sampled_from("123456789"))
            + draw(st.text("0123456789", min_size=1, max_size=3))
        )
        rest = draw(st.text("0123456789", min_size=6, max_size=8))
        sep = draw(st.sampled_from([" ", "-", "/"]))
        return f"{area}{sep}{rest}", area + rest
    cc = draw(
        st.sampled_from(
            [
                "1",
                "33",
                "44",
                "49",
                "39",
                "34",
                "31",
                "46",
                "48",
                "90",
                "81",
                "61",
                "65",
                "91",
                "971",
                "966",
                "52",
                "55",
            ]
        )
    )
    national = draw(st.sampled_from("123456789")) + draw(
        st.text("0123456789", min_size=7, max_size=9)
    )
    if style == "plus_compact":
        return f"+{cc}{national}", cc + national
    sep = draw(st.sampled_from([" ", "-", "."]))
    body = f"{national[:3]}{sep}{national[3:]}"
    return (f"+{cc} {body}" if style == "plus" else f"00{cc} {body}"), cc + national


#: (kind, as written, forms that must not appear in any output)
KINDS = ("card", "iban", "email", "phone")


@st.composite
def sensitive(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> tuple[str, str, tuple[str, ...]]:
    kind = draw(st.sampled_from(kinds))
    if kind == "card":
        text, digits = draw(cards())
        return kind, text, (text, digits)
    if kind == "iban":
        text, compact = draw(ibans())
        return kind, text, (text, compact)
    if kind == "email":
        text = draw(emails)
        return kind, text, (text,)
    text, digits = draw(phones())
    return kind, text, (text, digits)
