"""Slack incoming webhook: a Block Kit message (header, fields, sections, context).

Text that comes from events (titles, summaries, ids) is escaped: Slack reads `&`, `<` and `>` as
markup, and `<!channel>` in a provider-controlled string would page a whole channel.
"""

from __future__ import annotations

from typing import Any

from sinks.alert_outputs.base import Alert, HttpRequest, check_status, json_request
from sinks.alert_outputs.card import card

SEVERITY_EMOJI = {
    "info": ":information_source:",
    "low": ":large_blue_circle:",
    "medium": ":large_yellow_circle:",
    "high": ":large_orange_circle:",
    "critical": ":red_circle:",
}
HEADER_MAX = 150  # Slack's limit for a header block's text
SECTION_MAX = 3000  # Slack's limit for a section's text


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload(alert: Alert, lang: str = "en") -> dict[str, Any]:
    """The Slack message of `alert` (`text` is the notification fallback)."""
    c = card(alert, lang)
    evidence = "\n".join(f"• `{escape(e)}`" for e in c.evidence)
    if c.evidence_more:
        evidence += f"\n• {c.evidence_more}"
    steps = "\n".join(f"{i}. {escape(step)}" for i, step in enumerate(c.response, 1))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(c.heading, HEADER_MAX), "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"} for name, value in c.fields
            ],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(f"*{c.label('what')}*\n{escape(c.what)}", SECTION_MAX),
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(f"*{c.label('evidence')}*\n{evidence}", SECTION_MAX),
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(f"*{c.label('response')}*\n{steps}", SECTION_MAX),
            },
        },
        {"type": "divider"},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{SEVERITY_EMOJI.get(c.severity, '')} {c.label('alert_id')} `{escape(c.alert_id)}`",
                }
            ],
        },
    ]
    return {"text": escape(c.heading), "blocks": blocks}


class SlackOutput:
    def __init__(self, name: str, url: str, lang: str = "en") -> None:
        self.name = name
        self.url = url
        self.lang = lang

    def render(self, alert: Alert, now: float) -> HttpRequest:
        return json_request(self.url, payload(alert, self.lang))

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)  # Slack answers 200 "ok", or 4xx with a reason
