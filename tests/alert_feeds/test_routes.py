"""The routes file: routing by severity, detector and account; versions; errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import REPO_ROOT
from sinks.alert_outputs.dingtalk import DingTalkOutput
from sinks.alert_outputs.routes import RoutesError, load, parse
from sinks.alert_outputs.webhook import WebhookOutput
from tests.alert_feeds.samples import sample_alert

ENV = {"HOOK_SECRET": "k", "SLACK_URL": "https://hooks.slack.com/services/T/B/X"}


def config(**routes_override: Any) -> dict[str, Any]:
    return {
        "outputs": {
            "hook": {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret_env": "HOOK_SECRET"},
            "slack": {"type": "slack", "url_env": "SLACK_URL"},
        },
        "routes": routes_override.get(
            "routes",
            [
                {"name": "all", "outputs": ["hook"], "versions": "all"},
                {"name": "high", "min_severity": "high", "outputs": ["slack", "hook"]},
                {
                    "name": "acct",
                    "accounts": ["A-9"],
                    "detectors": ["refund_burst"],
                    "outputs": ["slack"],
                },
            ],
        ),
    }


def test_routing_by_severity_detector_account() -> None:
    routes = parse(config(), ENV)
    assert routes.targets(sample_alert(severity="low")) == ["hook"]
    assert routes.targets(sample_alert(severity="high")) == ["hook", "slack"]  # each output once
    assert routes.targets(sample_alert(severity="critical")) == ["hook", "slack"]
    assert routes.targets(sample_alert(account="A-9", severity="low", detector="refund_burst")) == [
        "hook",
        "slack",
    ]
    assert routes.targets(sample_alert(account="A-9", severity="low")) == ["hook"]  # other detector
    assert routes.targets(sample_alert(account="A-8", severity="low", detector="refund_burst")) == [
        "hook"
    ]
    assert (
        isinstance(routes.outputs["hook"], WebhookOutput) and routes.outputs["hook"].secret == "k"
    )
    assert routes.outputs["slack"].url == ENV["SLACK_URL"]  # type: ignore[attr-defined]


def test_versions_all_or_escalations() -> None:
    routes = parse(config(routes=[{"name": "r", "outputs": ["hook"]}]), ENV)
    sent = [n for n in range(1, 40) if routes.targets(sample_alert(count=n))]
    assert sent == [1, 2, 4, 8, 16, 32]
    routes = parse(config(routes=[{"name": "r", "outputs": ["hook"], "escalate_at": [5, 20]}]), ENV)
    assert [n for n in range(1, 40) if routes.targets(sample_alert(count=n))] == [1, 5, 20]
    routes = parse(config(routes=[{"name": "r", "outputs": ["hook"], "versions": "all"}]), ENV)
    assert all(routes.targets(sample_alert(count=n)) for n in range(1, 40))


def test_retry_policy_default_and_per_output() -> None:
    data = config()
    data["retry"] = {"max_attempts": 3}
    data["outputs"]["slack"]["retry"] = {"max_attempts": 9, "max_seconds": 5}
    routes = parse(data, ENV)
    assert routes.retry_policy("hook").max_attempts == 3
    assert (
        routes.retry_policy("slack").max_attempts,
        routes.retry_policy("slack").max_seconds,
    ) == (9, 5)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["outputs"]["hook"].update(type="pager"),
            r"outputs\.hook: .*'webhook', 'slack'",
        ),
        (
            lambda d: d["outputs"]["hook"].pop("secret_env"),
            r"outputs\.hook\.webhook\.secret_env: Field required",
        ),
        (
            lambda d: d["outputs"]["hook"].update(url="ftp://x/y"),
            r"outputs\.hook\.webhook: .*not an http\(s\) URL",
        ),
        (
            lambda d: d["outputs"]["hook"].update(url="not a url"),
            r"outputs\.hook\.webhook: .*not an http\(s\) URL",
        ),
        (
            lambda d: d["outputs"]["hook"].update(url_env="X"),
            r"outputs\.hook\.webhook: .*exactly one of url",
        ),
        (
            lambda d: d["outputs"]["hook"].update(colour="red"),
            r"outputs\.hook\.webhook\.colour: Extra inputs",
        ),
        (
            lambda d: d["routes"][0].update(outputs=["nope"]),
            r"routes\[0\] \(all\) sends to unknown output 'nope'",
        ),
        (lambda d: d["routes"][0].update(min_severity="urgent"), r"routes\.0\.min_severity"),
        (lambda d: d["outputs"]["hook"].update(lang="fr"), r"outputs\.hook\.webhook\.lang"),
    ],
)
def test_bad_configuration_names_the_field(mutate: Any, message: str) -> None:
    data = config()
    mutate(data)
    with pytest.raises(RoutesError, match=message):
        parse(data, ENV, "routes.toml")


def test_missing_secrets_and_bad_url_in_environment_name_the_variable() -> None:
    with pytest.raises(
        RoutesError, match=r"outputs\.hook\.secret_env: environment variable HOOK_SECRET is not set"
    ):
        parse(config(), {"SLACK_URL": ENV["SLACK_URL"]})
    with pytest.raises(
        RoutesError, match=r"outputs\.slack\.url_env: environment variable SLACK_URL is not set"
    ):
        parse(config(), {"HOOK_SECRET": "k"})
    with pytest.raises(
        RoutesError, match=r"outputs\.slack\.url_env: SLACK_URL holds 'slack' is not an http"
    ):
        parse(config(), {**ENV, "SLACK_URL": "slack"})


def test_example_file_loads_with_its_environment() -> None:
    env = {
        "PW_WEBHOOK_SECRET": "a",
        "PW_SLACK_URL": "https://hooks.slack.com/services/T/B/X",
        "PW_FEISHU_URL": "https://open.feishu.cn/open-apis/bot/v2/hook/x",
        "PW_FEISHU_SECRET": "b",
        "PW_DINGTALK_URL": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "PW_DINGTALK_SECRET": "SECc",
        "PW_WECOM_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "PW_SIEM_SECRET": "d",
    }
    routes = load(REPO_ROOT / "infra" / "alerts" / "routes.example.toml", env)
    assert set(routes.outputs) == {
        "soc-webhook",
        "slack-security",
        "feishu-ops",
        "dingtalk-ops",
        "wecom-ops",
        "siem",
        "alertmanager",
    }
    assert (
        isinstance(routes.outputs["dingtalk-ops"], DingTalkOutput)
        and routes.outputs["dingtalk-ops"].secret == "SECc"
    )
    assert routes.retry_policy("alertmanager").max_attempts == 5
    with pytest.raises(RoutesError, match="PW_WEBHOOK_SECRET is not set"):
        load(REPO_ROOT / "infra" / "alerts" / "routes.example.toml", {})


def test_yaml_file_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "outputs:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/h', secret_env: HOOK_SECRET}\n"
        "routes:\n  - {name: r, outputs: [hook]}\n"
    )
    assert list(load(path, ENV).outputs) == ["hook"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[outputs\n")
    with pytest.raises(RoutesError, match="not valid TOML"):
        load(bad, ENV)
    with pytest.raises(RoutesError, match="cannot read"):
        load(tmp_path / "missing.toml", ENV)
