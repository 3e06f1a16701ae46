"""Issue 15, finding 11: provider-controlled text on Feishu, DingTalk, WeCom (and Slack) cards.

A principal named `<at id=all></at>[verify here](https://evil.example/login)` became a mass
mention and a phishing link. Here every field that comes from an alert (ids, title, summary,
evidence ids, response steps, severity, times, count: the alert travels through Kafka, so all of
it is provider-controlled) gets hostile values from hypothesis, and each platform's rendered text
is checked two ways:

- by the markup each platform documents: no `<` (Feishu `<at>`/`<a>`/`<font>`/`<text_tag>`, WeCom
  `<@userid>`/`<font>`, DingTalk HTML, Slack `<!channel>`/`<url|text>`) other than the card's own
  `<font>`, no `[`/`]` (links, images), no `@` where `@` mentions, no `://` (auto-linked
  addresses), no `:` in Feishu text (emoji codes), no control or format character;
- by an independent CommonMark parser (markdown-it-py): the DingTalk and WeCom text parses to no
  link, image, autolink or HTML other than the card's `<font>`.

And it stays readable: decoding the character references gives back every value as written
(control characters shown as escapes, `pipeline.text.visible`).
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from pipeline.text import visible
from sinks.alert_outputs import dingtalk, feishu, slack, wecom, zh
from sinks.alert_outputs.card import EVIDENCE_SHOWN
from tests.alert_feeds.samples import sample_alert

NOW = 1_790_000_000.0

#: Pieces of live markup on the four platforms, and characters that break layouts or terminals.
PIECES = [
    "<at id=all></at>",
    '<at user_id="ou_1"></at>',
    "<at email=a@b.example></at>",
    "<at id=ou_123>",
    "[verify here](https://evil.example/login)",
    "![x](img_v2_key)",
    "[x]: https://evil.example",
    "<a href='https://evil.example'>x</a>",
    "<https://evil.example>",
    "https://evil.example/login",
    "<@all>",
    "<@zhangsan>",
    "@all",
    "@所有人",
    "@13800000000",
    "<!channel>",
    "<!here|here>",
    '<font color="warning">',
    "</font>",
    "<text_tag color='red'>t</text_tag>",
    "<img src=x onerror=alert(1)>",
    "<br>",
    "**",
    "*",
    "_",
    "__",
    "~~",
    "`",
    "```",
    "$x$",
    "|a|b|",
    ":OK:",
    ":DONE:",
    "&lt;at id=all&gt;",
    "&#60;at id=all&#62;",
    "&amp;",
    "\\",
    "\\[x\\](https://e.example)",
    "\n# H\n",
    "\n> quote",
    "\n- item",
    "\n1. item",
    "\n ---\n",
    "\r\n",
    "\r",
    "\t",
    "\x1b[31m",
    "\x1b]8;;https://evil.example\x07",
    "\x00",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\x85",
    "\ud800",
    "# ",
    "- ",
    "+ ",
    "> ",
]
hostile = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), min_size=1, max_size=5
).map("".join)
SCALARS = (
    "account_id",
    "provider_id",
    "principal_id",
    "title",
    "summary",
    "severity",
    "alert_id",
    "first_seen",
    "last_seen",
    "count",
)
alerts = st.fixed_dictionaries(
    {
        **{name: hostile for name in SCALARS},
        "detector": st.one_of(st.sampled_from(sorted(zh.DETECTORS)), hostile),
        "evidence_event_ids": st.lists(hostile, min_size=1, max_size=12),
        "response": st.lists(
            st.one_of(hostile, st.sampled_from(sorted(zh.RESPONSES))), min_size=1, max_size=4
        ),
    }
)

FINDING = "<at id=all></at>[verify here](https://evil.example/login)"
OWN_FONT = re.compile(r'^### <font color="[#a-z0-9]+">')
COMMONMARK = MarkdownIt("commonmark")  # raw HTML on, as DingTalk's PC client renders it


def rendered(platform: str, alert: dict[str, Any], lang: str) -> tuple[list[str], list[str]]:
    """(markup texts, plain texts) of the platform's message, from the request each output builds."""
    if platform == "feishu":
        body = (
            feishu.FeishuOutput("f", "https://open.feishu.cn/hook", secret="s", lang=lang)
            .render(alert, NOW)
            .json()
        )
        card = body["card"]
        plain = [card["header"]["title"]["content"]]
        markup = []
        for element in card["elements"]:
            texts = [f["text"] for f in element.get("fields", [])] + (
                [element["text"]] if "text" in element else []
            )
            markup += [t["content"] for t in texts if t["tag"] == "lark_md"]
            plain += [t["content"] for t in texts if t["tag"] == "plain_text"]
            plain += [e["content"] for e in element.get("elements", []) if e["tag"] == "plain_text"]
        return markup, plain
    if platform == "dingtalk":
        body = (
            dingtalk.DingTalkOutput(
                "d", "https://oapi.dingtalk.com/robot/send?access_token=t", lang=lang
            )
            .render(alert, NOW)
            .json()
        )
        assert "at" not in body  # no mention list: no @ in the text can notify anyone
        action = dingtalk.payload(alert, lang, "actionCard", "https://pw.example/alerts")[
            "actionCard"
        ]
        return [body["markdown"]["text"], action["text"]], [
            body["markdown"]["title"],
            action["title"],
        ]
    if platform == "wecom":
        body = (
            wecom.WeComOutput(
                "w", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", lang=lang
            )
            .render(alert, NOW)
            .json()
        )
        assert set(body["markdown"]) == {"content"}  # no mentioned_list
        return [body["markdown"]["content"]], []
    body = (
        slack.SlackOutput("s", "https://hooks.slack.com/services/x", lang=lang)
        .render(alert, NOW)
        .json()
    )
    markup, plain = [body["text"]], []
    for block in body["blocks"]:
        texts = (
            block.get("fields", [])
            + ([block["text"]] if "text" in block else [])
            + block.get("elements", [])
        )
        markup += [t["text"] for t in texts if t["type"] == "mrkdwn"]
        plain += [t["text"] for t in texts if t["type"] == "plain_text"]
    return markup, plain


def no_hidden_characters(text: str, where: str) -> None:
    for char in text:
        if char != "\n":
            assert unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"), (
                f"{where}: raw {char!r} in {text!r}"
            )


def assert_inert(platform: str, markup: list[str], plain: list[str]) -> None:
    for text in plain:
        no_hidden_characters(text, f"{platform} plain text")
    for text in markup:
        where = f"{platform}: {text!r}"
        no_hidden_characters(text, platform)
        body = text
        if platform in ("dingtalk", "wecom"):
            assert OWN_FONT.match(body), where
            body = OWN_FONT.sub("", body, count=1).replace("</font>", "", 1)
        assert "<" not in body and ">" not in body, where  # no tag, mention, autolink or quote
        if platform == "slack":
            continue  # Slack's links and mentions all need "<"
        assert "[" not in body and "]" not in body, where  # no link or image
        assert "://" not in body, where  # no address a client would make a link of
        if platform in ("dingtalk", "wecom"):
            assert "@" not in body, where
            tokens = [t for block in COMMONMARK.parse(text) for t in (block.children or [block])]
            kinds = {t.type for t in tokens}
            assert not kinds & {"link_open", "image", "html_block"}, where
            tags = [t.content for t in tokens if t.type == "html_inline"]
            assert len(tags) <= 2 and all(
                re.fullmatch(r'<font color="[#a-z0-9]+">|</font>', t) for t in tags
            ), (where, tags)
        if platform == "feishu":
            assert ":" not in body, where  # :EMOJI: codes


def assert_readable(
    platform: str, alert: dict[str, Any], markup: list[str], plain: list[str]
) -> None:
    """Decoded, the message shows every value as written (english cards show every field)."""
    shown = "\n".join(
        [html.unescape(text) for text in markup] + plain
    )  # plain text is shown as it is
    if platform == "wecom" and len(markup[0].encode()) >= wecom.MAX_BYTES - 3:
        return  # cut at WeCom's size limit: what is left was checked for markup above
    values = [alert[k] for k in SCALARS if k != "severity"] + alert["evidence_event_ids"][
        :EVIDENCE_SHOWN
    ]
    values += [alert["detector"], *alert["response"]]
    for value in values:
        assert visible(str(value)) in shown, (platform, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alert=alerts, lang=st.sampled_from(["en", "zh"]))
@example(alert={**sample_alert(), "principal_id": FINDING}, lang="en")
@example(alert={**sample_alert(), "provider_id": FINDING, "account_id": "<@all>\n# x"}, lang="zh")
def test_no_live_mention_link_image_or_tag_survives_in_any_card(
    alert: dict[str, Any], lang: str
) -> None:
    for platform in ("feishu", "dingtalk", "wecom", "slack"):
        markup, plain = rendered(platform, alert, lang)
        assert_inert(platform, markup, plain)
        if lang == "en":
            assert_readable(platform, alert, markup, plain)


def test_the_reported_principal_is_shown_as_text() -> None:
    alert = {**sample_alert(), "principal_id": FINDING}
    for platform in ("feishu", "dingtalk", "wecom"):
        markup, _ = rendered(platform, alert, "en")
        text = "\n".join(markup)
        assert "<at" not in text and "](" not in text and "https://" not in text
        assert FINDING in html.unescape(text), platform


def test_a_lone_surrogate_is_shown_not_a_crash() -> None:
    """orjson refuses to encode a lone surrogate: the card shows it as an escape instead."""
    alert = {**sample_alert(), "account_id": "A\ud800", "title": "\udfff"}
    for platform in ("feishu", "dingtalk", "wecom", "slack"):
        markup, plain = rendered(platform, alert, "en")
        assert "A\\ud800" in "\n".join([html.unescape(text) for text in markup] + plain), platform
