"""The Alertmanager output against a real Alertmanager (Debian's 0.25) on 127.0.0.1: an alert
fires there, and `alerts resolve` ends it, which the team's receiver is told (`send_resolved`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from partnerwatch.local_worker import Namespace, wait_for
from sinks.alert_delivery.lifecycle import status_record, with_lifecycle
from sinks.alert_delivery.sender import deliver
from sinks.alert_outputs.alertmanager import AlertmanagerOutput
from sinks.alert_outputs.routes import RetryPolicy
from sinks.kafka_io import ensure_topics
from sinks.kafka_io import producer as kafka_producer
from tests.alert_feeds.alertmanager_server import SKIP_REASON, Alertmanager, binary
from tests.alert_feeds.harness import Feed, produce_alerts
from tests.alert_feeds.receiver import Receiver
from tests.alert_feeds.samples import sample_alert

pytestmark = pytest.mark.skipif(binary() is None, reason=SKIP_REASON)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fresh_alert(account: str, window: str) -> dict[str, Any]:
    now = time.time()
    return sample_alert(account=account, window=window) | {
        "first_seen": iso(now - 120),
        "last_seen": iso(now - 60),
    }


@pytest.fixture()
def pager() -> Any:
    receiver = Receiver()
    receiver.set("up")
    yield receiver
    receiver.close()


@pytest.fixture()
def alertmanager(tmp_path: Path, pager: Receiver) -> Any:
    server = Alertmanager(tmp_path / "am", f"{pager.url}/pager").start()
    yield server
    server.stop()


def notifications(pager: Receiver, alert_id: str) -> list[str]:
    """The statuses Alertmanager notified the pager of for this alert, in order."""
    out = []
    for item in list(pager.received):
        for entry in orjson.loads(item.body)["alerts"]:
            if entry["labels"].get("alert_id") == alert_id:
                out.append(entry["status"])
    return out


def firing(am: Alertmanager, alert_id: str) -> list[dict[str, Any]]:
    return am.alerts(filter=f'alert_id="{alert_id}"')


async def _deliver(output: AlertmanagerOutput, alert: dict[str, Any]) -> bool:
    async with aiohttp.ClientSession() as session:
        outcome = await deliver(session, output, alert, RetryPolicy(max_attempts=3, max_seconds=30))
    return outcome.delivered


def test_alert_fires_and_a_resolve_ends_it(alertmanager: Alertmanager, pager: Receiver) -> None:
    output = AlertmanagerOutput("am", alertmanager.url)
    alert = fresh_alert("A-AM1", "w-am1")
    assert asyncio.run(_deliver(output, alert))
    [shown] = firing(alertmanager, alert["alert_id"])
    assert shown["status"]["state"] == "active"
    assert (
        shown["labels"]["detector"] == alert["detector"]
        and shown["labels"]["account_id"] == "A-AM1"
    )
    assert shown["annotations"]["title"] == alert["title"]
    wait_for(
        lambda: notifications(pager, alert["alert_id"]) == ["firing"], 30, "the firing notification"
    )

    # a later version (more evidence) updates the same Alertmanager alert
    assert asyncio.run(_deliver(output, alert | {"count": 2}))
    [shown] = firing(alertmanager, alert["alert_id"])
    assert shown["annotations"]["count"] == "2"

    resolved = with_lifecycle(
        alert | {"count": 2},
        {"status": "resolved", "actor": "ana", "note": "", "at": iso(time.time())},
    )
    assert asyncio.run(_deliver(output, resolved))
    wait_for(
        lambda: firing(alertmanager, alert["alert_id"]) == [],
        30,
        "the alert to end in Alertmanager",
    )
    wait_for(
        lambda: notifications(pager, alert["alert_id"])[-1:] == ["resolved"],
        30,
        "the resolved notification",
    )


@pytest.mark.integration
def test_resolve_on_the_status_topic_ends_the_alert_through_the_feed(
    kafka_broker: str, tmp_path: Path, alertmanager: Alertmanager, pager: Receiver
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f"""
[outputs.am]
type = "alertmanager"
url = "{alertmanager.url}"

[[routes]]
name = "all"
outputs = ["am"]
versions = "all"
"""
    )
    ns = Namespace(tmp_path)
    ensure_topics(ns.settings)
    feed = Feed(ns, routes).start()
    try:
        keep, end = fresh_alert("A-AM2", "w-keep"), fresh_alert("A-AM2", "w-end")
        produce_alerts(ns, [keep, end])
        wait_for(
            lambda: len(alertmanager.alerts(filter='account_id="A-AM2"')) == 2,
            60,
            f"both alerts firing: {feed.log_tail()}",
        )
        # The status record as the worker or the CLI publishes it, here without the alert (the
        # warehouse had not stored it yet): the feed uses the version it delivered.
        row = {
            "alert_id": end["alert_id"],
            "account_id": "A-AM2",
            "status": "resolved",
            "actor": "ana",
            "note": "",
            "at": iso(time.time()),
        }
        producer = kafka_producer(ns.settings, role="test-alert-status")
        try:
            producer.send(
                ns.settings.alert_status_topic, key=b"A-AM2", value=status_record(row, None)
            ).get(30)
        finally:
            producer.close()
        wait_for(
            lambda: firing(alertmanager, end["alert_id"]) == [],
            60,
            f"the resolved alert to end: {feed.log_tail()}",
        )
        wait_for(
            lambda: notifications(pager, end["alert_id"])[-1:] == ["resolved"],
            30,
            "the resolved notification",
        )
        assert [
            a["labels"]["alert_id"] for a in alertmanager.alerts(filter='account_id="A-AM2"')
        ] == [keep["alert_id"]]
        # a later version of the resolved alert does not fire it again
        produce_alerts(ns, [end | {"count": 2}])
        wait_for(
            lambda: feed.metric("pw_alert_deliveries_total", output="am", result="delivered") >= 4,
            60,
            "the later version delivered",
        )
        assert firing(alertmanager, end["alert_id"]) == []
    finally:
        feed.stop()
