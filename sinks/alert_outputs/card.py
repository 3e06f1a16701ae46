"""The readable content every chat output shows, in English or Simplified Chinese.

One place decides what a human sees about an alert (title, severity, account, provider, what
happened, evidence, response steps); Slack, Feishu, DingTalk and WeCom only lay it out.

Everything on a card that comes from the alert is provider-controlled (ids, titles, summaries,
even the severity and the response steps as they travel through Kafka). `card` makes control and
format characters visible (`pipeline.text.visible`: a newline is shown as `\\n`, a BiDi override
as `\\u202e`); each output then escapes the markup of its own platform (`char_refs` with the
platform's characters), so a principal named `<at id=all></at>[verify](https://evil.example)`
is shown as those characters: no mention, link, image or tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipeline.text import visible
from sinks.alert_outputs import zh
from sinks.alert_outputs.base import Alert

Lang = Literal["en", "zh"]

#: Evidence ids listed on a card; the rest are counted ("and 12 more").
EVIDENCE_SHOWN = 10

SEVERITY_NAMES: dict[str, dict[str, str]] = {
    "en": {
        "info": "Info",
        "low": "Low",
        "medium": "Medium",
        "high": "High",
        "critical": "Critical",
    },
    "zh": {"info": "提示", "low": "低", "medium": "中", "high": "高", "critical": "严重"},
}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "alert": "PartnerWatch alert",
        "severity": "Severity",
        "account": "Account",
        "provider": "Provider",
        "principal": "Principal",
        "detector": "Detector",
        "count": "Events",
        "seen": "Seen",
        "what": "What happened",
        "evidence": "Evidence (event ids)",
        "response": "Response steps",
        "more": "and {n} more",
        "alert_id": "Alert id",
    },
    "zh": {
        "alert": "PartnerWatch 告警",
        "severity": "严重级别",
        "account": "卖家账户",
        "provider": "服务商",
        "principal": "操作主体",
        "detector": "检测规则",
        "count": "事件数",
        "seen": "发生时间",
        "what": "发生了什么",
        "evidence": "证据 (事件 ID)",
        "response": "处置步骤",
        "more": "另有 {n} 条",
        "alert_id": "告警 ID",
    },
}


@dataclass(frozen=True, slots=True)
class Card:
    lang: str
    severity: str
    severity_name: str
    heading: str
    fields: tuple[tuple[str, str], ...]
    what: str
    evidence: tuple[str, ...]
    evidence_more: str
    response: tuple[str, ...]
    alert_id: str

    def label(self, key: str) -> str:
        return LABELS[self.lang][key]


def card(alert: Alert, lang: str = "en") -> Card:
    """The card of `alert` in `lang` (en or zh).

    In zh the title, what happened and the response steps come from the catalogue in
    sinks/alert_outputs/zh.py (English for a detector or step it does not know).
    """
    labels = LABELS[lang]
    severity = str(alert.get("severity", "info"))
    severity_name = visible(SEVERITY_NAMES[lang].get(severity, severity))
    raw_evidence = alert.get("evidence_event_ids", [])
    evidence = [
        visible(str(e))
        for e in (raw_evidence if isinstance(raw_evidence, list) else [raw_evidence])
    ]
    hidden = len(evidence) - EVIDENCE_SHOWN
    seen = str(alert.get("first_seen", ""))
    if alert.get("last_seen") and alert.get("last_seen") != alert.get("first_seen"):
        seen = f"{seen} → {alert['last_seen']}"
    fields = (
        (labels["severity"], severity_name),
        (labels["account"], visible(str(alert.get("account_id", "")))),
        (labels["provider"], visible(str(alert.get("provider_id", ""))) or "-"),
        (labels["principal"], visible(str(alert.get("principal_id", ""))) or "-"),
        (labels["detector"], visible(str(alert.get("detector", "")))),
        (labels["count"], visible(str(alert.get("count", 1)))),
        (labels["seen"], visible(seen)),
    )
    title, what = str(alert.get("title", "")), str(alert.get("summary", ""))
    raw_response = alert.get("response", [])
    response = tuple(
        str(step) for step in (raw_response if isinstance(raw_response, list) else [raw_response])
    )
    if lang == "zh":
        title, what = zh.text_for(alert) or (title, what)
        response = tuple(zh.step(step) for step in response)
    title, what = visible(title), visible(what)
    return Card(
        lang=lang,
        severity=severity,
        severity_name=severity_name,
        heading=f"[{severity_name.upper() if lang == 'en' else severity_name}] {title}",
        fields=fields,
        what=what,
        evidence=tuple(evidence[:EVIDENCE_SHOWN]),
        evidence_more=labels["more"].format(n=hidden) if hidden > 0 else "",
        response=tuple(visible(step) for step in response),
        alert_id=visible(str(alert.get("alert_id", ""))),
    )


def char_refs(
    text: str, always: frozenset[str], at_line_start: frozenset[str] = frozenset()
) -> str:
    """`text` with every character of `always`, and a first character (after spaces) of
    `at_line_start`, written as a numeric character reference (`<` as `&#60;`).

    A reference is shown as its character but never read as markup: Feishu documents it as the way
    to show markdown's special characters, and CommonMark (which DingTalk's and WeCom's renderers
    follow) forbids a reference to stand for a structural character. The text between stays as it
    is, so a card remains readable in the message source too.
    """
    out = []
    leading = True
    for char in text:
        if char in always or (leading and char in at_line_start):
            out.append(f"&#{ord(char)};")
        else:
            out.append(char)
        leading = leading and char == " "
    return "".join(out)


def markdown_body(c: Card, escape: Callable[[str], str], bullet: str = "- ") -> str:
    """The card as plain Markdown (DingTalk and WeCom render this subset; no tables, no HTML).

    `escape` is the platform's escaping of provider-controlled text; labels are ours.
    """
    lines = [f"**{name}**: {escape(value)}" for name, value in c.fields]
    lines += ["", f"**{c.label('what')}**", escape(c.what), "", f"**{c.label('evidence')}**"]
    lines += [f"{bullet}{escape(e)}" for e in c.evidence]
    if c.evidence_more:
        lines.append(f"{bullet}{c.evidence_more}")
    lines += ["", f"**{c.label('response')}**"]
    lines += [f"{i}. {escape(step)}" for i, step in enumerate(c.response, 1)]
    lines += ["", f"{c.label('alert_id')}: {escape(c.alert_id)}"]
    return "\n".join(lines)
