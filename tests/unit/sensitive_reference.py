"""`pipeline.sensitive.find_sensitive` and `_is_phone` as they were before their patterns were
gated on the text's shape (session 25), kept as the reference tests/unit/test_sensitive_shapes.py
compares the current ones with. Everything else they call is the module's own (unchanged)."""

from __future__ import annotations

import re

from pipeline.sensitive import (
    _CARD,
    _DATE,
    _DIGIT_RUN,
    _EMAIL,
    _GLUED,
    _IBAN_START,
    _IPV4,
    _NANP,
    _NON_DIGITS,
    _PHONE_RUN,
    _TIME_IN_TEXT,
    _TIMESTAMP,
    _UUID,
    CARD,
    EMAIL,
    IBAN,
    LONG_NUMBER,
    PHONE,
    _epoch_ms,
    _has_iban,
    _in_word,
    _inside_token,
    card_digits,
    plain,
)


def find_sensitive(value: str, *, free_text: bool = False) -> str | None:
    text = plain(value)
    digits = len(_NON_DIGITS.sub("", text)) if len(text) > 6 else 0
    if "@" in text and _EMAIL.search(text):
        return EMAIL
    if _IBAN_START.search(text) and _has_iban(text):
        return IBAN
    if digits < 7:
        return None
    text = _UUID.sub("-", text)
    if ":" in text:
        text = _TIME_IN_TEXT.sub("-", text)
    if digits >= 13:
        cards = text if free_text else _GLUED.sub("-", text)
        if any(card_digits(_NON_DIGITS.sub("", m.group())) for m in _CARD.finditer(cards)):
            return CARD
    if any(
        is_phone(m.group()) and not _inside_token(text, m, strict=m.group()[0] != "+")
        for m in _PHONE_RUN.finditer(text)
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


def is_phone(run: str) -> bool:
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
