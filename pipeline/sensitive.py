"""What bank and personal data look like in a value: card numbers, IBANs, e-mail addresses, phones.

`pipeline.masking` masks every value in which `find_sensitive` finds one, and `pipeline.event`
refuses an `account_id` holding one (the account is the chain's identity and the Kafka key, so
it is never masked). Each shape is recognized by its own check, to keep ordinary values (prices,
quantities, timestamps, IP addresses, event ids, seller ids) as they are:

- a **card number**: 13-19 digits, unbroken or in groups of 4 (or 4-6-5 / 4-6-4) split by one
  kind of space, dash or dot (the groups not joined to letters, nor part of a UUID; in an
  identifier, an unbroken run not glued to letters either: `A4244030000004` is a seller id),
  starting like an issuer's number of that length (13: 4; 14: 30, 36, 38, 39; 15: 34, 37; 16-19:
  2200-2204, 2221-2720, 30, 34-39, 4, 5, 6) and passing the Luhn check;
- an **IBAN**: a country code with its registered IBAN length, the check digits and the account
  part (spaces, dashes or dots allowed between characters), passing the ISO 13616 mod-97 check;
- an **e-mail address**: `local@domain.tld`;
- a **phone number**: `+` and 8-15 digits; `00`, a country code and 8-15 digits with a separator;
  a North American `(NXX) NXX-XXXX` with separators; or a national number starting with `0`,
  9-13 digits in groups of two or more with separators, that is not a date; the last three not
  when joined by `- _ . /` to further letters or digits (`AA-010-123456` is an id); never the
  parts of an RFC 3339 time inside a value (`evt-2000-01-01T00:00:01.000001-10:00`);
- in free text only (`changes` values, `policy` strings): also **9 or more digits** in a row
  (single spaces or dashes between them allowed), which is how account numbers are written, unless
  the run is part of a decimal number (`100000000.00`) or of an id (`A000000000000`,
  `gw-0000-000000`; a word that starts like an IBAN, `DE89...`, is not an id), a date, part of a UUID, or the whole value is a timestamp (RFC 3339, or epoch
  milliseconds of 2001-2100).

Values are checked after Unicode compatibility normalization (NFKC), with format characters
(zero-width spaces, bidi marks) removed and every decimal digit read as its ASCII digit, so
a card number written in fullwidth digits (U+FF10-U+FF19) is the card number it shows.
"""

from __future__ import annotations

import re
import unicodedata

#: Registered IBAN lengths (SWIFT IBAN registry), by country code.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HN": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}

CARD = "a card number"
IBAN = "an IBAN"
EMAIL = "an e-mail address"
PHONE = "a phone number"
LONG_NUMBER = "a long number"

_FORMAT_CHARS = re.compile(
    r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)
_UNICODE_DIGIT = re.compile(
    r"(?![0-9])\d"
)  # a decimal digit of another script (`\d` is Unicode here)
_NON_DIGITS = re.compile(r"[^0-9]+")
_CARD = re.compile(
    r"(?<![0-9])[0-9]{13,19}(?![0-9])"
    r"|(?<![0-9A-Za-z])(?:[0-9]{4}([ .-])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"
    r"|[0-9]{4}([ .-])[0-9]{6}\2[0-9]{4,5})(?![0-9A-Za-z])"
)
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})([0-9]{2})")
_IBAN_LIKE = re.compile(r"[A-Za-z]{2}[0-9]{2}")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE_RUN = re.compile(
    r"(?<![A-Za-z0-9+])(?:\+|\()?[0-9]+(?:(?:[ .\-/]|\)[ .\-/]?|[ ]?\()[0-9]+)*(?![A-Za-z0-9])"
)
_NANP = re.compile(
    r"(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-]?)[2-9][0-9]{2}[ .-][0-9]{4}"
)
_DAY, _MONTH = r"(?:0?[1-9]|[12][0-9]|3[01])", r"(?:0?[1-9]|1[0-2])"
#: A calendar date (day-month-year, month/day/year or year-month-day, four-digit year).
_DATE = re.compile(
    rf"(?<![0-9])(?:{_DAY}([./-]){_MONTH}\1[0-9]{{4}}|{_MONTH}([./-]){_DAY}\2[0-9]{{4}}"
    rf"|[0-9]{{4}}([./-]){_MONTH}\3{_DAY})(?![0-9])"
)
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_DIGIT_RUN = re.compile(r"(?<![0-9])(?<![0-9][.,])[0-9](?:[ -]?[0-9]){8,}(?![0-9]|[.,][0-9])")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
#: An RFC 3339 date and time anywhere in a value (its fraction and offset read like phone groups).
_TIME_IN_TEXT = re.compile(
    r"(?<![0-9])[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2}(?![0-9]))?"
)
#: An unbroken run of card length glued to a letter: part of an identifier's word.
_GLUED = re.compile(r"[A-Za-z][0-9]{13,19}(?![0-9])|(?<![0-9])[0-9]{13,19}[A-Za-z]")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9:.]+([Zz]|[+-][0-9:]+)?)?")


def plain(value: str) -> str:
    """The text as it reads: NFKC-normalized, format characters removed, decimal digits in ASCII."""
    if value.isascii():
        return value
    text = _FORMAT_CHARS.sub("", unicodedata.normalize("NFKC", value))
    return _UNICODE_DIGIT.sub(_ascii_digit, text)


def _ascii_digit(match: re.Match[str]) -> str:
    char = match.group()
    digit = unicodedata.decimal(char, None)
    return char if digit is None else str(digit)


def find_sensitive(value: str, *, free_text: bool = False) -> str | None:
    """What bank or personal datum `value` holds (CARD, IBAN, EMAIL, PHONE, LONG_NUMBER), or None."""
    text = plain(value)
    # Each pattern below runs only where the text's shape (`_shape`) holds what any match of it
    # must: the regular expressions cost a microsecond or more on an id, the shape a tenth.
    shape = _shape(text)
    digits = shape.count(b"d") if len(text) > 6 else 0
    if "@" in text and _EMAIL.search(text):
        return EMAIL
    # `shape.find(...) >= 0`, not `in`: `bytes in bytes` first tries the right side as an
    # integer (`65 in b"A"`), and raising and clearing that TypeError costs more than the search
    if _may_start_iban(shape) and _IBAN_START.search(text) and _has_iban(text):
        return IBAN
    if digits < 7:
        return None
    before = text
    if "-" in text:  # a UUID's groups are neither cards nor phones (a UUID has its hyphens)
        text = _UUID.sub("-", text)
    if ":" in text:  # nor the parts of a date and time
        text = _TIME_IN_TEXT.sub("-", text)
    if text is not before:  # `sub` hands back its input when nothing matched
        shape = _shape(text)  # `-` where digits were: never more digits
    # every `_CARD` match: 13 digits in a row, or 4 digits, one of ` .-` and 4 more (`_GLUED`
    # only puts `-` where a run glued to a letter was: it neither adds digits nor joins groups)
    if digits >= 13 and (shape.find(b"ddddddddddddd") >= 0 or shape.find(b"ddddsdddd") >= 0):
        cards = text if free_text else _GLUED.sub("-", text)  # `A4244030000004` is an id
        if any(card_digits(_NON_DIGITS.sub("", m.group())) for m in _CARD.finditer(cards)):
            return CARD
    # every run `_is_phone` accepts has 8 digits or more and a `+`, a `(`, or a group of digits
    # followed by a separator (` .-/` or `)`: the `00` and national forms, `_NANP`)
    if (
        digits >= 8
        and ("+" in text or "(" in text or shape.find(b"ds") >= 0 or shape.find(b"dt") >= 0)
        and any(
            # the cheap test first: most runs in an id are parts of it (`sim-07-000000001`)
            not _inside_token(text, m, strict=m.group()[0] != "+") and _is_phone(m.group())
            for m in _PHONE_RUN.finditer(text)
        )
    ):
        return PHONE
    long_number = (
        free_text and digits >= 9 and not _TIMESTAMP.fullmatch(text) and not _epoch_ms(text)
    )
    if long_number:
        runs = _DIGIT_RUN.finditer(text)
        if any(not _DATE.search(m.group()) and not _in_word(text, m) for m in runs):
            return LONG_NUMBER
    return None


#: Each byte of a text's UTF-8 as its kind: `d` an ASCII digit, `a` an ASCII letter, `s` one of
#: ` .-`, `t` one of `/)`, `x` anything else (no byte of a non-ASCII character is a digit, a
#: letter or a separator of ASCII).
_SHAPES = bytes(
    ord(
        "d"
        if chr(b).isascii() and chr(b).isdigit()
        else "a"
        if chr(b).isascii() and chr(b).isalpha()
        else "s"
        if chr(b) in " .-"
        else "t"
        if chr(b) in "/)"
        else "x"
    )
    for b in range(256)
)


def _may_start_iban(shape: bytes) -> bool:
    """Whether a text of this shape may hold an `_IBAN_START` match: two ASCII letters and two
    ASCII digits where a word starts (at the start, or after a byte that is no ASCII letter or
    digit). A hex id's digits and letters form `aadd` in most ids, but rarely where a word
    starts (`gw-` and 32 hex digits: about one id in twenty against nine in ten)."""
    return (
        shape.startswith(b"aadd")
        or shape.find(b"saadd") >= 0
        or shape.find(b"taadd") >= 0
        or shape.find(b"xaadd") >= 0
    )


def _shape(text: str) -> bytes:
    """`text`'s shape: one byte of `_SHAPES` per byte of its UTF-8 (a lone surrogate as it is)."""
    return text.encode("utf-8", "surrogatepass").translate(_SHAPES)


def _epoch_ms(text: str) -> bool:
    """A whole value of digits that is a time in 2001-2100 in epoch milliseconds."""
    return text.isdigit() and 978_307_200_000 <= int(text) <= 4_102_444_800_000


def card_number(value: int | float) -> bool:
    """Is a JSON number a card number (an integer of 13-19 digits that passes `card_digits`)?"""
    if isinstance(value, float):
        if not value.is_integer() or not 1e12 <= value < 1e19:
            return False
        value = int(value)
    return value > 0 and card_digits(str(value))


def card_digits(digits: str) -> bool:
    """13-19 digits with an issuer's prefix (for that length) and a valid Luhn check digit."""
    if not 13 <= len(digits) <= 19 or not _issuer_prefix(digits):
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_prefix(digits: str) -> bool:
    first = digits[0]
    if len(digits) == 13:  # Visa's old numbers only
        return first == "4"
    if len(digits) == 14:  # Diners Club
        return digits[:2] in ("30", "36", "38", "39")
    if len(digits) == 15:  # American Express
        return digits[:2] in ("34", "37")
    if first in "456":
        return True
    if first == "3":
        return digits[1] not in "123"
    if first == "2":
        prefix = int(digits[:4])
        return 2200 <= prefix <= 2204 or 2221 <= prefix <= 2720
    return False


def iban_valid(compact: str) -> bool:
    """ISO 13616: registered length for the country, and the mod-97 check over the rearranged text."""
    compact = compact.upper()
    if (
        IBAN_LENGTHS.get(compact[:2]) != len(compact)
        or not compact.isalnum()
        or not compact.isascii()
    ):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _has_iban(text: str) -> bool:
    for match in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(match.group(1).upper())
        if length is None:
            continue
        # Walk `length - 4` more letters or digits, with at most one separator between two of them.
        chars = [match.group(1), match.group(2)]
        need, i, n = length - 4, match.end(), len(text)
        while need and i < n:
            char = text[i]
            if char.isascii() and char.isalnum():
                chars.append(char)
                need -= 1
                i += 1
            elif char in " .-" and i + 1 < n and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
            else:
                break
        if (
            need == 0
            and not (i < n and text[i].isascii() and text[i].isalnum())
            and iban_valid("".join(chars))
        ):
            return True
    return False


def _inside_token(text: str, match: re.Match[str], *, strict: bool) -> bool:
    """Is the run one part of a longer id such as `AA-010-123456` (joined by - _ . / to letters or digits)?"""
    if not strict:
        return False
    start, end = match.span()
    joined_before = start >= 2 and text[start - 1] in "-_./" and text[start - 2].isalnum()
    joined_after = end + 1 < len(text) and text[end] in "-_./" and text[end + 1].isalnum()
    return joined_before or joined_after


def _in_word(text: str, match: re.Match[str]) -> bool:
    """Is a digit run part of an id: glued to letters (`A000000000000`, `AA00000000000`, unless the
    word starts like an IBAN of a country that has them, `DE89...`), or joined to one by - _ . / (`gw-0000-000000`)?"""
    start, end = match.span()
    if (start and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha()):
        word_start = start
        while word_start and text[word_start - 1].isalnum():
            word_start -= 1
        iban_like = _IBAN_LIKE.match(text, word_start)
        return not (iban_like and iban_like.group()[:2].upper() in IBAN_LENGTHS)
    return _inside_token(text, match, strict=True)


def _is_phone(run: str) -> bool:
    if run[0] not in "+0(":  # only the North American form starts otherwise
        return _NANP.fullmatch(run) is not None
    digits = _NON_DIGITS.sub("", run)
    separated = len(digits) < len(run.lstrip("+"))
    if run.startswith("+"):
        return 8 <= len(digits) <= 15 and digits[0] != "0"
    if run.startswith("00") and len(digits) > 2 and digits[2] != "0":
        return separated and 8 <= len(digits) - 2 <= 15
    if _NANP.fullmatch(run):
        return True
    if (
        not (run.startswith("0") or run.startswith("(0"))
        or not separated
        or not 9 <= len(digits) <= 13
    ):
        return False
    if digits[1] == "0" or _DATE.search(run) or _IPV4.fullmatch(run):
        return False
    groups = re.findall(r"[0-9]+", run)
    return 2 <= len(groups[0]) <= 5 and all(len(g) >= 2 for g in groups[1:])
