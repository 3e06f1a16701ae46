# ruff: noqa: RUF001  (full-width Chinese punctuation is intended here)
"""The Simplified Chinese catalogue covers every detector and every response step it can emit.

Detector ids and response steps are collected two independent ways, so a new detector or step
cannot slip past: from the source (every `ctx.finding(detector=..., response=...)` call in
detectors/rules/*.py and detectors/provider_wide/rules/*.py, its arguments resolved to the
module's constants), and by running every fixture case (their *.json) through detectors.run.observe
or the provider-wide Stage and keeping what the findings carry.
"""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

import detectors.provider_wide.rules
import detectors.rules
from detectors.provider_wide import MODULES as PROVIDER_WIDE
from detectors.provider_wide.run import Stage
from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from sinks.alert_outputs import dingtalk, feishu, slack, wecom, zh
from sinks.alert_outputs.card import card
from tests.alert_feeds.samples import sample_alert
from tests.detectors.test_cases import build_event, case_files

CJK = re.compile(r"[\u4e00-\u9fff]")


def _resolve(node: ast.expr, module: Any) -> Any:
    """The value of a `ctx.finding(...)` argument that names a module-level constant."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return getattr(module, node.id)
    if isinstance(node, ast.Attribute):
        return getattr(_resolve(node.value, module), node.attr)
    raise AssertionError(
        f"{module.__name__}: ctx.finding argument {ast.unparse(node)} is not a module constant"
    )


def from_source() -> tuple[set[str], set[str]]:
    """(detector ids, response steps) of every ctx.finding(...) written in detectors/rules/*.py."""
    ids: set[str] = set()
    steps: set[str] = set()
    packages = (detectors.rules, detectors.provider_wide.rules)
    for package, info in ((p, i) for p in packages for i in pkgutil.iter_modules(p.__path__)):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        # the source beside the module: a compiled tree (`make compile`) imports the extension
        source = Path(package.__path__[0]) / f"{info.name}.py"
        tree = ast.parse(source.read_text())
        for call in ast.walk(tree):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "finding"
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "ctx"
            ):
                continue
            args = {k.arg: k.value for k in call.keywords}
            ids.add(_resolve(args["detector"], module))
            response = _resolve(args["response"], module)
            assert isinstance(response, tuple) and all(isinstance(s, str) for s in response), (
                module.__name__
            )
            steps.update(response)
    return ids, steps


def from_cases() -> tuple[set[str], set[str]]:
    """(detector ids, response steps) of every finding the fixture cases produce."""
    ids: set[str] = set()
    steps: set[str] = set()
    for path in case_files():
        provider_wide = orjson.loads(path.read_bytes())["detector"] in PROVIDER_WIDE
        for case in orjson.loads(path.read_bytes())["cases"]:
            states: dict[str, dict[str, Any]] = {}
            stage = Stage(DetectionConfig())
            for n, raw in enumerate(case["events"]):
                event = build_event(raw, case["name"], n)
                if provider_wide:
                    found = stage.findings(event)
                else:
                    found = observe(
                        states.setdefault(event["account_id"], new_state()),
                        event,
                        DetectionConfig(),
                    )
                for f in found:
                    ids.add(f.detector)
                    steps.update(f.response)
    return ids, steps


SOURCE_IDS, SOURCE_STEPS = from_source()
CASE_IDS, CASE_STEPS = from_cases()


def test_collection_found_the_detectors() -> None:
    """The two collections agree where they overlap and are not empty (the scan itself works)."""
    assert len(SOURCE_IDS) >= 20 and {"behaviour_anomaly", "cross_account_spray"} <= SOURCE_IDS
    assert CASE_IDS <= SOURCE_IDS and CASE_STEPS <= SOURCE_STEPS
    assert len(SOURCE_STEPS) >= 20


def test_every_detector_has_chinese_templates_and_no_stale_ones() -> None:
    ids = SOURCE_IDS | CASE_IDS
    assert sorted(ids - set(zh.DETECTORS)) == []
    assert sorted(set(zh.DETECTORS) - ids) == []


#: An English title that picks each variant with a `match` (by its regex).
TITLES = {
    r"buyer personal data": "Provider P-7 downloaded buyer personal data (x)",
    r"^Unusual day of provider .* across its accounts": (
        "Unusual day of provider P-7 across its accounts (provider-accounts-day vector)"
    ),
    r"^Unusual day of provider ": (
        "Unusual day of provider P-7 on account A-1001 (provider-day vector)"
    ),
}


@pytest.mark.parametrize("detector", sorted(zh.DETECTORS))
@pytest.mark.parametrize("provider", ["P-7", ""])
def test_templates_render_without_placeholders(detector: str, provider: str) -> None:
    alert = sample_alert(detector=detector, count=3, evidence=3)
    alert["provider_id"] = provider
    for variant in zh.DETECTORS[detector]:
        alert["title"] = TITLES[variant.match] if variant.match else "anything else"
        rendered = zh.text_for(alert)
        assert rendered is not None
        assert rendered == (
            zh._tidy(variant.title.format_map(zh.fields(alert))),
            zh._tidy(variant.summary.format_map(zh.fields(alert))),
        ), "the alert's title picks this variant"
        for text in rendered:
            assert not re.search(r"[{}]", text), text
            assert CJK.search(text) and "A-1001" in rendered[1]
            assert "  " not in text and not re.search(r" [，。；）：]", text), text
            if not provider:
                assert "服务商 -" not in text and "服务商  " not in text


def test_every_response_step_has_a_chinese_translation() -> None:
    missing = sorted((SOURCE_STEPS | CASE_STEPS) - set(zh.RESPONSES))
    assert missing == []
    for english, chinese in zh.RESPONSES.items():
        assert CJK.search(chinese) and chinese != english


def _real_alert(detector: str, steps: tuple[str, ...]) -> dict[str, Any]:
    alert = sample_alert(detector=detector, severity="critical")
    alert["response"] = list(steps)
    return alert


TAKEOVER = importlib.import_module("detectors.responses").TAKEOVER
ALLOWLIST = importlib.import_module("detectors.rules.ip_outside_allowlist").RESPONSE


def _rendered(output: str, alert: dict[str, Any]) -> str:
    body = {
        "slack": lambda: slack.payload(alert, "zh"),
        "feishu": lambda: feishu.payload(alert, "zh"),
        "dingtalk": lambda: dingtalk.payload(alert, "zh"),
        "dingtalk-actioncard": lambda: dingtalk.payload(
            alert, "zh", "actionCard", "https://pw.example/alerts"
        ),
        "wecom": lambda: wecom.payload(alert, "zh"),
    }[output]()
    return orjson.dumps(body).decode()


@pytest.mark.parametrize("output", ["slack", "feishu", "dingtalk", "dingtalk-actioncard", "wecom"])
@pytest.mark.parametrize(
    ("detector", "steps"),
    [("account_takeover_sequence", TAKEOVER), ("ip_outside_allowlist", ALLOWLIST)],
)
def test_chinese_chat_card_has_chinese_title_and_steps_and_no_english_step(
    output: str, detector: str, steps: tuple[str, ...]
) -> None:
    alert = _real_alert(detector, steps)
    text = _rendered(output, alert)
    title, summary = zh.text_for(alert) or ("", "")
    # each platform escapes provider-controlled text its own way (the Chinese text included)
    quote = {"slack": slack.escape, "feishu": feishu.escape, "wecom": wecom.escape}.get(
        output, dingtalk.escape
    )
    assert quote(title) in text and quote(summary) in text
    for step in steps:
        assert quote(zh.RESPONSES[step]) in text, step
    for english in zh.RESPONSES:
        assert quote(english)[:40] not in text, english
    assert quote(alert["title"]) not in text and quote(alert["summary"]) not in text


def test_english_card_is_unchanged() -> None:
    alert = _real_alert("ip_outside_allowlist", ALLOWLIST)
    c = card(alert, "en")
    assert c.heading == f"[CRITICAL] {alert['title']}"
    assert c.what == alert["summary"] and c.response == ALLOWLIST


def test_unknown_detector_falls_back_to_english_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert = sample_alert(detector="a_detector_nobody_translated")
    with caplog.at_level(logging.WARNING, logger=zh.__name__):
        first, second = card(alert, "zh"), card(alert, "zh")
    assert first == second and first.heading == f"[高] {alert['title']}"
    assert first.what == alert["summary"]
    notes = [
        r.getMessage() for r in caplog.records if "a_detector_nobody_translated" in r.getMessage()
    ]
    assert len(notes) == 1 and "English" in notes[0]
