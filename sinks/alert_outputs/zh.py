# ruff: noqa: RUF002  (full-width Chinese punctuation is intended here)
"""Simplified Chinese titles, summaries and response steps for alerts (outputs with `lang = "zh"`).

Detectors write their text in English with detector-specific numbers; a Chinese-speaking team
needs to know at a glance what happened and what to do. This catalogue renders a title and a
summary per detector from the alert's structured fields only (account, provider, principal,
times, count, evidence), and translates every response step a detector can emit, keyed by its
exact English text (tests/alert_feeds/test_zh.py fails when a detector gains a step or a detector
id that is not here). An unknown detector or step falls back to English, logged once.

The templates are in sinks/alert_outputs/zh_detectors.py, the response steps in
sinks/alert_outputs/zh_responses.py.
"""

from __future__ import annotations

import logging
import re

from sinks.alert_outputs.base import Alert
from sinks.alert_outputs.zh_detectors import DETECTORS
from sinks.alert_outputs.zh_responses import RESPONSES

log = logging.getLogger(__name__)

_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, name: str) -> None:
    if (kind, name) not in _warned:
        _warned.add((kind, name))
        log.warning(
            "no Simplified Chinese text for %s %r: the card shows it in English", kind, name
        )


def fields(alert: Alert) -> dict[str, str]:
    """The values the templates are filled with, from the alert's structured fields only."""
    provider = str(alert.get("provider_id") or "")
    principal = str(alert.get("principal_id") or "") or "-"
    first, last = str(alert.get("first_seen", "")), str(alert.get("last_seen") or "")
    return {
        "account": str(alert.get("account_id", "")),
        "provider": provider or "-",
        "principal": principal,
        "who": f"服务商 {provider} 的操作主体 {principal} "
        if provider
        else f"操作主体 {principal} ",
        "by": f"服务商 {provider} " if provider else f"操作主体 {principal} ",
        "when": f"{first} 至 {last}" if last and last != first else f"时间 {first}",
        "count": str(alert.get("count", 1)),
        "evidence": str(len(alert.get("evidence_event_ids", []))),
        "severity": str(alert.get("severity", "")),
    }


def _tidy(text: str) -> str:
    """Drop the space an id leaves before full-width punctuation ("服务商 P-7 ）")."""
    return re.sub(r" +(?=[\u3000-\u303f\uff00-\uffef])", "", text).strip()


def text_for(alert: Alert) -> tuple[str, str] | None:
    """The (title, summary) of `alert` in Chinese, or None for a detector with no templates."""
    detector = str(alert.get("detector", ""))
    variants = DETECTORS.get(detector)
    if not variants:
        _warn_once("detector", detector)
        return None
    title = str(alert.get("title", ""))
    chosen = next(
        v for v in variants if not v.match or re.search(v.match, title) or v is variants[-1]
    )
    values = fields(alert)
    return _tidy(chosen.title.format_map(values)), _tidy(chosen.summary.format_map(values))


def step(text: str) -> str:
    """A response step in Chinese (the English text when the catalogue does not know it)."""
    zh = RESPONSES.get(text)
    if zh is None:
        _warn_once("response step", text[:60])
        return text
    return zh
