"""WeCom (企业微信) group robot: a markdown message.

The robot's markdown is a small subset (headings, bold, links, quotes, `<font color="info|comment|warning">`)
and a message is at most 4096 bytes, so long evidence lists are cut before that.
"""

from __future__ import annotations

from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_chat_answer, json_request
from sinks.alert_outputs.card import card, markdown_body

#: the robot's only colours: green, grey, orange-red
COLOUR = {"info": "comment", "low": "info", "medium": "warning", "high": "warning", "critical": "warning"}
MAX_BYTES = 4096


def payload(alert: Alert, lang: str = "en") -> dict[str, Any]:
    c = card(alert, lang)
    content = f'### <font color="{COLOUR.get(c.severity, "comment")}">{c.heading}</font>\n' + markdown_body(c)
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
