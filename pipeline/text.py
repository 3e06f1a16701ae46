"""Provider-controlled text made visible: control and format characters become escapes.

Ids, titles and summaries come from events a provider sends. Before a person reads them (a
terminal, a chat card) every character that moves the cursor, changes colour, reorders text or
hides itself is shown as an escape instead of acting:

- C0 and C1 control characters (newline, carriage return, ESC of an ANSI sequence, CSI, NUL...);
- Unicode format characters (category Cf: BiDi overrides and isolates, zero-width spaces and
  joiners, the BOM...), line and paragraph separators (Zl, Zp) and lone surrogates (Cs);
- the backslash itself, doubled, so an escape shown always means that character was there.

`\\n`, `\\r` and `\\t` are shown as such; any other character as `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`.
Everything else (letters of any script, punctuation, emoji) is kept, so the text stays readable.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _hidden(char: str) -> bool:
    return char == "\\" or unicodedata.category(char) in _HIDDEN


def visible(text: str) -> str:
    """`text` with control, format and separator characters (and backslashes) escaped."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(c) if _hidden(c) else c for c in text)
