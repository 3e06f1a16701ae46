"""The terminal: the two consoles, and how provider-controlled text is printed.

Ids, titles, summaries, the text of errors about them: anything that came from an event is printed
as `plain(value)`, a `rich.text.Text` that rich never parses as markup (`[/bold]` in a provider id
is shown, not a crash) with control and format characters escaped (`pipeline.text.visible`: an
ANSI escape, a newline or a BiDi override is shown as `\\x1b`, `\\n`, `\\u202e`, never sent to
the terminal). `line(...)` joins our own markup and such texts into one printable line. JSON output
escapes the same characters as `\\uXXXX` (`json_line`), CSV output writes cells through `visible`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import orjson
from rich.console import Console
from rich.text import Text

from pipeline.text import visible

#: `:name:` emoji codes stay text (a provider id `:bomb:` is not drawn as a bomb)
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def plain(value: object, style: str = "") -> Text:
    """Provider-controlled `value` for printing: never read as markup, control characters escaped."""
    return Text(visible(str(value)), style=style)


def line(*parts: str | Text) -> Text:
    """One printable line of our own markup strings and `plain` texts, in order."""
    return Text.assemble(
        *(part if isinstance(part, Text) else Text.from_markup(part, emoji=False) for part in parts)
    )


_JSON_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_line(doc: Any) -> str:
    """`doc` as one JSON line in which no character a terminal acts on appears raw.

    orjson already writes C0 controls as escapes; DEL, C1 controls, format characters (BiDi,
    zero-width) and line separators become `\\uXXXX` too, which any JSON reader decodes to the same value.
    """
    text = orjson.dumps(doc).decode()
    if text.isascii() and "\x7f" not in text:
        return text
    return "".join(
        _json_escape(c) if ord(c) >= 0x7F and unicodedata.category(c) in _JSON_HIDDEN else c
        for c in text
    )
