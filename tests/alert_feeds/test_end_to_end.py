"""An attack event through the real worker reaches every output type, each receiver checking
the exact payload and the signature the way the real service would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from partnerwatch.local_worker import Namespace, Worker, wait_for
from sinks.alert_outputs import dingtalk, feishu, slack, wecom
from sinks.alert_outputs.ocsf import to_ocsf
from tests.alert_feeds.harness import Feed
from tests.alert_feeds.receiver import Received, Receiver

pytestmark = pytest.mark.integration

ACCOUNT = "A-E2E"
SECRETS = {
    "E2E_HOOK": "hook-secret",
    "E2E_FEISHU": "feishu-secret",
    "E2E_DING": "SECding-secret",
    "E2E_SIEM": "siem-secret",
}
LINK = "https://pw.example/alerts"

EVENTS: list[dict[str, Any]] = [
    {
        "event_id": "e2e-grant",
        "occurred_at": "2026-11-26T08:00:00Z",
        "account_id": ACCOUNT,
        "actor": {"type": "seller", "principal_id": "owner"},
        "action": "permission.grant",
        "grant": {
            "grant_id": "g1",
            "provider_id": "prov-1",
            "scopes": ["listing.*"],
            "ip_allowlist": ["185.12.40.0/24"],
        },
    },
    {
        "event_id": "e2e-attack",
        "occurred_at": "2026-11-26T09:00:00Z",
        "account_id": ACCOUNT,
        "marketplace": "DE",
        "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"},
        "source": {"ip": "91.40.249.39"},
        "action": "listing.update",
    },
]


def headers(item: Received) -> dict[str, str]:
    return {k.lower(): v for k, v in item.headers.items()}


def webhook_signed(secret: str) -> Any:
    """Standard Webhooks' own verifier (the `standardwebhooks` package), as a receiver would run it."""

    def check(item: Received) -> bool:
        try:
            Webhook(secret.encode()).verify(item.body, headers(item), json_parse=False)
        except WebhookVerificationError:
            return False
        return True

    return check


def resolve(ns: Namespace, alert_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ns.port}/v1/alerts/{alert_id}/resolve",
        data=orjson.dumps({"by": "ana", "note": "grant revoked"}),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        answer: dict[str, Any] = orjson.loads(r.read())
    return answer


def feishu_signed(item: Received) -> bool:
    """Feishu's check: sign = base64(HMAC-SHA256(key=timestamp+"\\n"+secret, "")), timestamp within an hour."""
    body = orjson.loads(item.body)
    ts = body.get("timestamp", "0")
    mac = hmac.new(f"{ts}\n{SECRETS['E2E_FEISHU']}".encode(), b"", hashlib.sha256).digest()
    return abs(time.time() - int(ts)) < 3600 and hmac.compare_digest(
        base64.b64encode(mac).decode(), body.get("sign", "")
    )


def dingtalk_signed(item: Received) -> bool:
    """DingTalk's check: sign = base64(HMAC-SHA256(key=secret, timestamp+"\\n"+secret)) in the URL, ms timestamp within an hour."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(item.path).query)
    ts, sign = query["timestamp"][0], query["sign"][0]
    secret = SECRETS["E2E_DING"]
    mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    return abs(time.time() * 1000 - int(ts)) < 3_600_000 and hmac.compare_digest(
        base64.b64encode(mac).decode(), sign
    )


def test_attack_through_the_worker_reaches_every_output(kafka_broker: str, tmp_path: Path) -> None:
    chat_ok = b'{"code":0,"msg":"success","errcode":0,"errmsg":"ok"}'
    receivers = {
        "hook": Receiver(check=webhook_signed(SECRETS["E2E_HOOK"])),
        "slack": Receiver(),
        "feishu": Receiver(answer=chat_ok, check=feishu_signed),
        "dingtalk": Receiver(answer=chat_ok, check=dingtalk_signed),
        "wecom": Receiver(answer=chat_ok),
        "siem": Receiver(check=webhook_signed(SECRETS["E2E_SIEM"])),
        "am": Receiver(),
    }
    for r in receivers.values():
        r.set("up")
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f"""
[outputs.hook]
type = "webhook"
url = "{receivers["hook"].url}/hook"
secret_env = "E2E_HOOK"
[outputs.slack]
type = "slack"
url = "{receivers["slack"].url}/services/T/B/X"
[outputs.feishu]
type = "feishu"
url = "{receivers["feishu"].url}/open-apis/bot/v2/hook/x"
secret_env = "E2E_FEISHU"
lang = "zh"
[outputs.dingtalk]
type = "dingtalk"
url = "{receivers["dingtalk"].url}/robot/send?access_token=tok"
secret_env = "E2E_DING"
style = "actionCard"
link = "{LINK}"
lang = "zh"
[outputs.wecom]
type = "wecom"
url = "{receivers["wecom"].url}/cgi-bin/webhook/send?key=k"
[outputs.siem]
type = "ocsf"
url = "{receivers["siem"].url}/ocsf"
secret_env = "E2E_SIEM"
[outputs.am]
type = "alertmanager"
url = "{receivers["am"].url}"

[[routes]]
name = "everything"
min_severity = "low"
detectors = ["ip_outside_allowlist"]
outputs = ["hook", "slack", "feishu", "dingtalk", "wecom", "siem", "am"]
"""
    )
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    feed = Feed(ns, routes, SECRETS).start()
    try:
        ns.send(EVENTS)
        wait_for(
            lambda: all(r.count() >= 1 for r in receivers.values()),
            90,
            f"the alert at every receiver: {feed.log_tail()}",
        )
        [record] = [
            r
            for r in ns.read_topic(ns.settings.alerts_topic, expect=1)
            if orjson.loads(r.value)["detector"] == "ip_outside_allowlist"
        ]
        alert = orjson.loads(record.value)
        assert alert["account_id"] == ACCOUNT and "e2e-attack" in alert["evidence_event_ids"]
        for name, r in receivers.items():
            assert r.count() == 1 and not r.rejected, name

        def body_at(name: str, index: int) -> Any:
            return orjson.loads(receivers[name].received[index].body)

        def body(name: str) -> Any:
            return body_at(name, 0)

        assert body("hook") == alert
        assert body("slack") == slack.payload(alert, "en")
        assert {
            k: v for k, v in body("feishu").items() if k not in ("timestamp", "sign")
        } == feishu.payload(alert, "zh")
        assert body("dingtalk") == dingtalk.payload(alert, "zh", "actionCard", LINK)
        assert body("wecom") == wecom.payload(alert, "en")
        assert body("siem") == to_ocsf(alert)
        assert receivers["am"].received[0].path == "/api/v2/alerts"
        [am] = body("am")
        assert (
            am["labels"]["alert_id"] == alert["alert_id"]
            and am["labels"]["severity"] == alert["severity"]
        )
        assert (
            am["startsAt"] == alert["first_seen"] and am["annotations"]["title"] == alert["title"]
        )
        # the Chinese cards read in Chinese
        assert (
            "严重级别" in orjson.dumps(body("feishu")).decode()
            and "处置步骤" in body("dingtalk")["actionCard"]["text"]
        )

        # Resolving it in PartnerWatch ends it in Alertmanager and closes the OCSF finding; the
        # other outputs are not sent the lifecycle.
        wait_for(
            lambda: (
                ns.sql(
                    "SELECT count() FROM audit.alerts WHERE alert_id = {id:String}",
                    {"id": alert["alert_id"]},
                )
                == [[1]]
            ),
            60,
            "the alert in the warehouse",
        )
        answer = resolve(ns, alert["alert_id"])
        assert answer["status"] == "resolved" and answer["outputs_notified"] is True
        wait_for(
            lambda: receivers["am"].count() >= 2 and receivers["siem"].count() >= 2,
            60,
            f"the resolve at Alertmanager and the SIEM: {feed.log_tail()}",
        )
        [ended] = orjson.loads(receivers["am"].received[1].body)
        assert ended["labels"] == am["labels"]
        assert ended["endsAt"] <= answer["at"] and ended["annotations"]["resolved_by"] == "ana"
        closed = body_at("siem", 1)
        assert (closed["status_id"], closed["activity_id"]) == (4, 3)
        assert (
            closed["finding_info"]["uid"] == alert["alert_id"]
            and closed["comment"] == "grant revoked"
        )
        assert not receivers["siem"].rejected  # signed (Standard Webhooks) like the first
        for name in ("hook", "slack", "feishu", "dingtalk", "wecom"):
            assert receivers[name].count() == 1, name
    finally:
        feed.stop()
        worker.stop()
        for r in receivers.values():
            r.close()
