"""DingTalk custom robot: markdown or actionCard, with the signed-URL scheme.

Signing ("加签"): with `timestamp` in milliseconds, `sign = urlencode(base64(HMAC-SHA256(key =
secret, message = "<timestamp>\n<secret>")))`, appended to the webhook URL as `&timestamp=...&sign=...`.
DingTalk refuses a timestamp more than an hour off. Note the difference from Feishu: the secret
is the HMAC key here, and the URL carries the signature, not the body.

The text is DingTalk markdown (headings, quotes, `**`/`*` emphasis, `[text](url)` links,
`![](url)` images, lists) and the PC client also renders HTML (`<font>`, `<a>`, ...). A mention
is live only for numbers and user ids listed in the message's `at` field, which these messages
never carry; `@` is escaped anyway, so no `@all` or `@<mobile>` text reaches the chat. Provider
text is written with numeric character references (`card.char_refs`) for `&` `<` `>` `[` `]`
`(` `)` `*` `_` `~` `` ` `` `|` `@` `:` (so `https:` never becomes a link) and `\\`, and for `#`,
`-`, `+` at the start of a line. The message `title` (the notification preview) is plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_chat_answer, json_request
from sinks.alert_outputs.card import card, char_refs, markdown_body

COLOUR = {
    "info": "#888888",
    "low": "#1f78d1",
    "medium": "#d4a017",
    "high": "#e8590c",
    "critical": "#d0021b",
}
#: escaped anywhere, and at the start of a line (see the module's docstring)
MARKDOWN = frozenset("&<>[]()*_~`|@:\\")
MARKDOWN_LINE_START = frozenset("#-+")


def escape(text: str) -> str:
    """Provider text for DingTalk markdown: shown as written, never read as markup or a mention."""
    return char_refs(text, MARKDOWN, MARKDOWN_LINE_START)


def sign(secret: str, timestamp_ms: int | str) -> str:
    """The URL-encoded `sign` query value."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return urllib.parse.quote_plus(base64.b64encode(mac.digest()).decode())


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    joiner = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def payload(
    alert: Alert, lang: str = "en", style: str = "markdown", link: str = ""
) -> dict[str, Any]:
    """The DingTalk message of `alert`: `markdown`, or `actionCard` with a button to `link`."""
    c = card(alert, lang)
    colour = COLOUR.get(c.severity, "#888888")
    text = f'### <font color="{colour}">{escape(c.heading)}</font>\n\n' + markdown_body(
        c, escape
    ).replace("\n", "\n\n")
    if style == "actionCard":
        action: dict[str, Any] = {"title": c.heading, "text": text}
        if link:
            action.update({"singleTitle": c.label("alert"), "singleURL": link})
        return {"msgtype": "actionCard", "actionCard": action}
    return {"msgtype": "markdown", "markdown": {"title": c.heading, "text": text}}


class DingTalkOutput:
    def __init__(
        self,
        name: str,
        url: str,
        secret: str = "",
        lang: str = "en",
        style: str = "markdown",
        link: str = "",
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.lang = lang
        self.style = style
        self.link = link

    def render(self, alert: Alert, now: float) -> HttpRequest:
        url = signed_url(self.url, self.secret, int(now * 1000)) if self.secret else self.url
        return json_request(url, payload(alert, self.lang, self.style, self.link))

    def accept(self, status: int, body: bytes) -> None:
        check_chat_answer(status, body, "errcode", "errmsg")
