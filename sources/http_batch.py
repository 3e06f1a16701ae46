"""Split an HTTP ingest body into its events, as the client's own bytes, one verdict each.

`POST /v1/events` takes one event (any body not starting with `[`) or a JSON array of events.
The array is cut at its top-level commas by a scanner that only knows strings and brackets, so
one bad element (invalid UTF-8, nesting deeper than the JSON parser allows, a syntax error) is
one rejected event and not the whole request, and every element keeps its original bytes, for
the actions topic when accepted and for the dead letter when rejected. Nothing is decoded here:
each element is validated on its own by `pipeline.event.parse_action`.

The pieces cover the body: the elements (whitespace around them dropped) plus the brackets and
commas between them. A malformed array is still cut somewhere: an unterminated string runs to the
end, text after the closing `]` is one more element (rejected as not JSON), an empty element
between two commas is an element (rejected).
"""

from __future__ import annotations

import re

#: a string (to its closing quote, or to the end when unterminated) or one structural byte
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{},]', re.S)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def split_batch(body: bytes) -> list[bytes]:
    """The events of a request body: each top-level element of an array, or the body itself."""
    start = len(body) - len(body.lstrip())
    if body[start : start + 1] != b"[":
        return [body]
    items: list[bytes] = []
    depth = 0
    item_start = start + 1
    commas = 0
    end = None
    for match in _TOKENS.finditer(body, start):
        byte = body[match.start()]
        if byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth == 0:
                end = match.start()
                break
        elif byte == 0x2C and depth == 1:  # a comma between two elements
            items.append(body[item_start : match.start()].strip())
            item_start = match.end()
            commas += 1
    last = body[item_start:end].strip() if end is not None else body[item_start:].strip()
    if last or commas:
        items.append(last)
    if end is not None:
        trailing = body[end + 1 :].strip()
        if trailing:
            items.append(trailing)
    return items
