"""Feishu / Lark custom bot: an interactive card, optionally signed.

Signing (the bot's "signature verification" setting): `sign = base64(HMAC-SHA256(key =
"<timestamp>\n<secret>", message = empty))`, with `timestamp` in seconds; both go into the JSON
body next to `msg_type`. Feishu refuses a timestamp more than an hour off.

The card's text is `lark_md`: `<at id=all></at>` mentions, `<a href>` and `[text](url)` links,
`<font>`, `<text_tag>`, `*`/`_`/`~~` emphasis and `:EMOJI:` codes are live there. Provider text is
escaped with the numeric character references Feishu documents for showing those characters
(`&#60;` for `<`, ...; see `card.char_refs`): `&` (so a reference in an id is shown, not decoded),
`<` `>` (tags, mentions), `[` `]` `(` `)` (links, images), `*` `_` `~` `` ` `` `$` (emphasis,
code, formulas), `:` (emoji codes, and `https:` so no address becomes a link), `\\`; and `#`,
`-`, `+` at the start of a line. The header and the note are `plain_text`: nothing is live there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_chat_answer, json_request
from sinks.alert_outputs.card import card, char_refs

#: header colour per severity (Feishu card header templates)
TEMPLATE = {"info": "grey", "low": "blue", "medium": "yellow", "high": "orange", "critical": "red"}


def sign(secret: str, timestamp: int | str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


#: escaped anywhere, and at the start of a line (see the module's docstring)
LARK_MD = frozenset("&<>[]()*_~`$:\\")
LARK_MD_LINE_START = frozenset("#-+")


def escape(text: str) -> str:
    """Provider text for `lark_md`: shown as written, never read as markup."""
    return char_refs(text, LARK_MD, LARK_MD_LINE_START)


def _md(content: str) -> dict[str, str]:
    return {"tag": "lark_md", "content": content}


def payload(alert: Alert, lang: str = "en") -> dict[str, Any]:
    """The Feishu message of `alert` (msg_type interactive)."""
    c = card(alert, lang)
    evidence = "\n".join(f"- {escape(e)}" for e in c.evidence) + (
        f"\n- {c.evidence_more}" if c.evidence_more else ""
    )
    steps = "\n".join(f"{i}. {escape(step)}" for i, step in enumerate(c.response, 1))
    elements: list[dict[str, Any]] = [
        {
            "tag": "div",
            "fields": [
                {"is_short": True, "text": _md(f"**{name}**\n{escape(value)}")}
                for name, value in c.fields
            ],
        },
        {"tag": "hr"},
        {"tag": "div", "text": _md(f"**{c.label('what')}**\n{escape(c.what)}")},
        {"tag": "div", "text": _md(f"**{c.label('evidence')}**\n{evidence}")},
        {"tag": "div", "text": _md(f"**{c.label('response')}**\n{steps}")},
        {
            "tag": "note",
            "elements": [{"tag": "plain_text", "content": f"{c.label('alert_id')}: {c.alert_id}"}],
        },
    ]
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": c.heading},
                "template": TEMPLATE.get(c.severity, "grey"),
            },
            "elements": elements,
        },
    }


class FeishuOutput:
    def __init__(self, name: str, url: str, secret: str = "", lang: str = "en") -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.lang = lang

    def render(self, alert: Alert, now: float) -> HttpRequest:
        body = payload(alert, self.lang)
        if self.secret:
            timestamp = str(int(now))
            body = {"timestamp": timestamp, "sign": sign(self.secret, timestamp), **body}
        return json_request(self.url, body)

    def accept(self, status: int, body: bytes) -> None:
        check_chat_answer(status, body, "code", "msg")
