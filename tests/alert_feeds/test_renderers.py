"""Every output's payload shape and signature, checked against independent computations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
import urllib.parse

import orjson
import pytest

from pipeline import webhook_signature
from sinks.alert_outputs import alertmanager, dingtalk, feishu, ocsf, slack, webhook, wecom
from sinks.alert_outputs.base import DeliveryError
from sinks.alert_outputs.card import EVIDENCE_SHOWN, card
from tests.alert_feeds.samples import sample_alert

NOW = 1_790_000_000.25


def openssl_hmac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 by the openssl command: a third implementation beside Python's hmac."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}", "-binary"],
        input=message,
        capture_output=True,
        check=True,
    )
    return out.stdout


needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl command not installed"
)


# -- generic webhook -----------------------------------------------------------------------------


def test_webhook_body_is_the_alert_and_signature_is_standard_webhooks_hmac() -> None:
    alert = sample_alert(count=3)
    request = webhook.WebhookOutput(
        "soc", "https://soc.example/h", "s3cret", {"X-Team": "sec"}
    ).render(alert, NOW)
    assert orjson.loads(request.body) == alert
    assert request.headers["webhook-timestamp"] == "1790000000"
    assert (
        request.headers["webhook-id"] == f"{alert['alert_id']}.3"
    )  # one id per alert version, every retry
    expected = hmac.new(
        b"s3cret", f"{alert['alert_id']}.3.1790000000.".encode() + request.body, hashlib.sha256
    ).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    assert request.headers["X-Team"] == "sec"
    assert request.headers["Content-Type"] == "application/json"


def test_webhook_whsec_secret_is_its_base64_key() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    request = webhook.WebhookOutput("soc", "https://soc.example/h", secret).render(
        sample_alert(), NOW
    )
    msg_id = request.headers["webhook-id"]
    expected = hmac.new(
        key, f"{msg_id}.1790000000.".encode() + request.body, hashlib.sha256
    ).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    with pytest.raises(ValueError, match="base64"):
        webhook.WebhookOutput("soc", "https://soc.example/h", "whsec_not*base64")


@needs_openssl
def test_webhook_signature_matches_openssl() -> None:
    request = webhook.WebhookOutput("soc", "https://soc.example/h", "k").render(sample_alert(), NOW)
    signed = f"{request.headers['webhook-id']}.1790000000.".encode() + request.body
    mac = openssl_hmac(b"k", signed)
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_verify_signature_accepts_fresh_and_refuses_replay_tamper_and_wrong_secret() -> None:
    body = b'{"alert_id":"x"}'

    def signed(ts: int = 1000, msg_id: str = "m1") -> dict[str, str]:
        return webhook_signature.headers("k", msg_id, ts, body)

    assert webhook.verify_signature("k", signed(), body, tolerance=300, now=1000 + 299)
    assert webhook.verify_signature("k", signed(), body, tolerance=300, now=1000 - 299)
    assert not webhook.verify_signature(
        "k", signed(), body, tolerance=300, now=1000 + 301
    )  # replayed late
    assert not webhook.verify_signature("k", signed(), body + b" ", now=1000)  # body changed
    assert not webhook.verify_signature(
        "k", signed() | {"webhook-timestamp": "1001"}, body, now=1000
    )
    assert not webhook.verify_signature("k", signed() | {"webhook-id": "m2"}, body, now=1000)
    assert not webhook.verify_signature("other", signed(), body, now=1000)
    assert not webhook.verify_signature(
        "k", signed() | {"webhook-timestamp": "soon"}, body, now=1000
    )
    assert not webhook.verify_signature(
        "k", {k: v for k, v in signed().items() if k != "webhook-signature"}, body, now=1000
    )
    # key rotation: several signatures, one valid is enough
    rotated = signed() | {"webhook-signature": "v1,AAAA " + signed()["webhook-signature"]}
    assert webhook.verify_signature("k", rotated, body, now=1000)


def test_http_status_decides_retry() -> None:
    out = webhook.WebhookOutput("soc", "https://soc.example/h", "k")
    out.accept(204, b"")
    for status, retryable in (
        (503, True),
        (500, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
    ):
        with pytest.raises(DeliveryError) as info:
            out.accept(status, b"nope")
        assert info.value.retryable is retryable, status


# -- Slack ----------------------------------------------------------------------------------------


def test_slack_blocks_show_the_card_and_escape_markup() -> None:
    alert = sample_alert()
    alert["title"] = "<!channel> & friends"
    message = slack.SlackOutput("s", "https://hooks.slack.com/services/x").render(alert, NOW).json()
    assert message["text"] == "[HIGH] &lt;!channel&gt; &amp; friends"
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds == ["header", "section", "section", "section", "section", "divider", "context"]
    assert message["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "[HIGH] <!channel> & friends",
        "emoji": True,
    }
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert (
        "*Severity*\nHigh" in fields
        and "*Account*\nA-1001" in fields
        and "*Provider*\nP-7" in fields
    )
    assert len(fields) <= 10  # Slack's limit per section
    assert alert["summary"] in message["blocks"][2]["text"]["text"]
    assert "`ev-A-1001-0`" in message["blocks"][3]["text"]["text"]
    assert "1. Suspend the provider's API credentials" in message["blocks"][4]["text"]["text"]
    assert alert["alert_id"] in message["blocks"][6]["elements"][0]["text"]


def test_card_lists_ten_evidence_ids_and_counts_the_rest() -> None:
    c = card(sample_alert(evidence=25))
    assert len(c.evidence) == EVIDENCE_SHOWN and c.evidence_more == "and 15 more"


def test_chinese_card_labels() -> None:
    c = card(sample_alert(severity="critical"), "zh")
    assert c.heading.startswith("[严重] ")
    assert ("卖家账户", "A-1001") in c.fields and c.label("response") == "处置步骤"


# -- Feishu ---------------------------------------------------------------------------------------


def test_feishu_interactive_card_with_signature() -> None:
    out = feishu.FeishuOutput(
        "f", "https://open.feishu.cn/open-apis/bot/v2/hook/abc", secret="fs-secret", lang="zh"
    )
    body = out.render(sample_alert(severity="critical"), NOW).json()
    assert body["msg_type"] == "interactive"
    assert body["timestamp"] == "1790000000"
    # independent: key = timestamp + "\n" + secret, message empty, base64
    key = b"1790000000\nfs-secret"
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    header = body["card"]["header"]
    assert header["template"] == "red" and header["title"] == {
        "tag": "plain_text",
        "content": "[严重] 服务商 P-7 从 IP 白名单之外的地址进行操作",
    }
    elements = body["card"]["elements"]
    assert elements[0]["tag"] == "div" and all(f["is_short"] for f in elements[0]["fields"])
    texts = " ".join(e["text"]["content"] for e in elements if "text" in e)
    # a step the catalogue does not know (the sample's) stays English
    assert "发生了什么" in texts and "ev-A-1001-0" in texts and "1. Suspend" in texts


@needs_openssl
def test_feishu_sign_matches_openssl() -> None:
    expected = base64.b64encode(openssl_hmac(b"1790000000\nfs-secret", b"")).decode()
    assert feishu.sign("fs-secret", 1790000000) == expected


def test_feishu_unsigned_has_no_sign_and_error_code_fails() -> None:
    out = feishu.FeishuOutput("f", "https://open.feishu.cn/open-apis/bot/v2/hook/abc")
    assert "sign" not in out.render(sample_alert(), NOW).json()
    out.accept(200, b'{"code":0,"msg":"success"}')
    with pytest.raises(DeliveryError, match="19021"):
        out.accept(200, b'{"code":19021,"msg":"sign match fail"}')


# -- DingTalk -------------------------------------------------------------------------------------


def test_dingtalk_signed_url_per_the_documented_scheme() -> None:
    secret = "SEC0123456789abcdef"
    out = dingtalk.DingTalkOutput(
        "d", "https://oapi.dingtalk.com/robot/send?access_token=tok", secret=secret
    )
    request = out.render(sample_alert(), NOW)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    assert query["access_token"] == ["tok"]
    ts = query["timestamp"][0]
    assert ts == "1790000000250"  # milliseconds
    # independent: HMAC key = secret, message = timestamp + "\n" + secret; base64; then URL-encoded
    raw = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(raw).decode()]  # parse_qs undid the URL encoding
    assert f"&sign={urllib.parse.quote(base64.b64encode(raw).decode(), safe='')}" in request.url


@needs_openssl
def test_dingtalk_sign_matches_openssl() -> None:
    secret = "SECabc"
    raw = openssl_hmac(secret.encode(), f"1577262236757\n{secret}".encode())
    assert dingtalk.sign(secret, 1577262236757) == urllib.parse.quote_plus(
        base64.b64encode(raw).decode()
    )


def test_dingtalk_markdown_and_action_card() -> None:
    alert = sample_alert()
    md = dingtalk.payload(alert)
    assert md["msgtype"] == "markdown" and md["markdown"]["title"] == f"[HIGH] {alert['title']}"
    # provider text is escaped (no code span: references are not decoded inside one)
    assert (
        "**Account**: A-1001" in md["markdown"]["text"]
        and "\n- ev-A-1001-0\n" in md["markdown"]["text"]
    )
    card_ = dingtalk.payload(alert, style="actionCard", link="https://pw.example/alerts")
    assert card_["msgtype"] == "actionCard"
    assert card_["actionCard"]["singleURL"] == "https://pw.example/alerts"
    assert "Response steps" in card_["actionCard"]["text"]
    out = dingtalk.DingTalkOutput("d", "https://oapi.dingtalk.com/robot/send?access_token=t")
    assert "sign=" not in out.render(alert, NOW).url
    with pytest.raises(DeliveryError, match="errcode=310000"):
        out.accept(200, b'{"errcode":310000,"errmsg":"sign not match"}')


# -- WeCom ----------------------------------------------------------------------------------------


def test_wecom_markdown_within_size_limit() -> None:
    message = (
        wecom.WeComOutput("w", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
        .render(sample_alert(), NOW)
        .json()
    )
    assert message["msgtype"] == "markdown"
    content = message["markdown"]["content"]
    assert (
        content.startswith('### <font color="warning">&#91;HIGH&#93; ')
        and "**Provider**: P-7" in content
    )
    big = sample_alert(evidence=50)
    big["summary"] = "x" * 6000
    assert len(wecom.payload(big)["markdown"]["content"].encode()) <= wecom.MAX_BYTES


# -- OCSF -----------------------------------------------------------------------------------------


def test_ocsf_detection_finding() -> None:
    alert = sample_alert(severity="critical", count=3, evidence=3)
    finding = ocsf.to_ocsf(alert)
    assert finding["class_uid"] == 2004 and finding["category_uid"] == 2
    assert finding["activity_id"] == 2 and finding["type_uid"] == 200402  # an update: count 3
    assert ocsf.to_ocsf(sample_alert())["activity_id"] == 1
    assert finding["severity_id"] == 5 and finding["severity"] == "Critical"
    assert [
        ocsf.to_ocsf(sample_alert(severity=s))["severity_id"]
        for s in ("info", "low", "medium", "high")
    ] == [1, 2, 3, 4]
    info = finding["finding_info"]
    assert (
        info["uid"] == alert["alert_id"]
        and info["title"] == alert["title"]
        and info["desc"] == alert["summary"]
    )
    assert info["first_seen_time"] == 1795168800000  # 2026-11-20T10:00:00Z
    assert info["last_seen_time"] == 1795168800000 + 330_250
    assert finding["time"] == info["last_seen_time"]
    assert info["related_events"] == [{"uid": f"ev-A-1001-{i}"} for i in range(3)]
    assert (
        finding["metadata"]["product"]["name"] == "PartnerWatch"
        and finding["metadata"]["version"] == "1.1.0"
    )


def test_ocsf_output_posts_the_finding_signed() -> None:
    request = ocsf.OcsfOutput("siem", "https://siem.example/ocsf", secret="k").render(
        sample_alert(), NOW
    )
    assert request.json()["class_uid"] == 2004
    assert webhook.verify_signature("k", request.headers, request.body, now=NOW)
    assert ocsf.OcsfOutput("siem", "https://siem.example/ocsf").render(
        sample_alert(), NOW
    ).headers.keys() == {"Content-Type"}


# -- Alertmanager ---------------------------------------------------------------------------------


def test_alertmanager_v2_alert() -> None:
    alert = sample_alert()
    request = alertmanager.AlertmanagerOutput("am", "http://am:9093/").render(alert, NOW)
    assert request.url == "http://am:9093/api/v2/alerts"
    [entry] = request.json()
    assert entry["labels"]["alertname"] == "ip_outside_allowlist"
    assert {k: entry["labels"][k] for k in ("severity", "detector", "account_id", "alert_id")} == {
        "severity": "high",
        "detector": "ip_outside_allowlist",
        "account_id": "A-1001",
        "alert_id": alert["alert_id"],
    }
    assert (
        entry["annotations"]["summary"] == alert["summary"]
        and entry["annotations"]["title"] == alert["title"]
    )
    assert entry["startsAt"] == alert["first_seen"]
    assert entry["endsAt"] == "2026-09-21T15:13:20.250Z"  # NOW + 3600 s
