"""WeCom (企业微信) group robot: a markdown message.

The robot's markdown is a small subset (headings, bold, links, quotes, `<font color="info|comment|warning">`)
and a message is at most 4096 bytes, so long evidence lists are cut before that.

`<@userid>` in the content mentions a member. WeCom documents no escape for its markdown, so
provider text is written with numeric character references (`card.char_refs`), which a markdown
renderer shows as the character and never reads as markup: `&` `<` `>` (mentions, `<font>`) `[`
`]` `(` `)` (links) `*` `_` `~` `` ` `` (emphasis, code) `@` `:` (so `https:` never becomes a link)
and `\\`, and `#`, `-`, `+` at the start of a line. Should a client show the references
undecoded, the reader sees `&#60;` where a `<` was: still no mention or link.
"""

from __future__ import annotations

from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_chat_answer, json_request
from sinks.alert_outputs.card import card, char_refs, markdown_body

#: the robot's only colours: green, grey, orange-red
COLOUR = {
    "info": "comment",
    "low": "info",
    "medium": "warning",
    "high": "warning",
    "critical": "warning",
}
MAX_BYTES = 4096
#: escaped anywhere, and at the start of a line (see the module's docstring)
MARKDOWN = frozenset("&<>[]()*_~`@:\\")
MARKDOWN_LINE_START = frozenset("#-+")


def escape(text: str) -> str:
    """Provider text for WeCom markdown: shown as written, never read as markup or a mention."""
    return char_refs(text, MARKDOWN, MARKDOWN_LINE_START)


def payload(alert: Alert, lang: str = "en") -> dict[str, Any]:
    c = card(alert, lang)
    colour = COLOUR.get(c.severity, "comment")
    content = f'### <font color="{colour}">{escape(c.heading)}</font>\n' + markdown_body(c, escape)
    raw = content.encode()
    if len(raw) > MAX_BYTES:
        content = raw[: MAX_BYTES - 3].decode("utf-8", "ignore") + "..."
    return {"msgtype": "markdown", "markdown": {"content": content}}


class WeComOutput:
    def __init__(self, name: str, url: str, lang: str = "en") -> None:
        self.name = name
        self.url = url
        self.lang = lang

    def render(self, alert: Alert, now: float) -> HttpRequest:
        return json_request(self.url, payload(alert, self.lang))

    def accept(self, status: int, body: bytes) -> None:
        check_chat_answer(status, body, "errcode", "errmsg")
