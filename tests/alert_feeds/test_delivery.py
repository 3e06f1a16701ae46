"""The feed on the real broker against real HTTP receivers: outages, order, parking, redelivery."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition

from partnerwatch.local_worker import Namespace, wait_for
from sinks import kafka_io
from sinks.alert_outputs.webhook import verify_signature
from tests.alert_feeds.harness import Feed, produce_alerts
from tests.alert_feeds.receiver import Received, Receiver
from tests.alert_feeds.samples import sample_alert

pytestmark = pytest.mark.integration

SECRET = "feed-test-secret"


def signed_by(secret: str):  # type: ignore[no-untyped-def]
    """The receiver's own check of the generic webhook signature (5-minute replay window)."""

    def check(item: Received) -> bool:
        return verify_signature(secret, item.headers, item.body, 300)

    return check


def routes_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return path


def versions(n_accounts: int, per_account: int) -> list[dict]:  # type: ignore[type-arg]
    """Interleaved accounts; per account, alternating new alerts and new versions of one alert."""
    out = []
    for i in range(per_account):
        for a in range(n_accounts):
            account = f"A-{a}"
            if i % 2 == 0:
                out.append(sample_alert(account=account, count=i // 2 + 1, window="grow"))
            else:
                out.append(sample_alert(account=account, window=f"w{i}", severity="medium"))
    return out


def committed_everything(ns: Namespace, group: str, topic: str) -> bool:
    admin = kafka_io.admin(ns.settings)
    consumer = kafka_io.consumer(ns.settings, role="test-offsets")
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = consumer.end_offsets(parts)
        return all(
            offsets.get(tp) is not None and offsets[tp].offset == ends[tp]
            for tp in parts
            if ends[tp] > 0
        )
    finally:
        admin.close()
        consumer.close()


def read_parked(ns: Namespace, expect: int) -> list[dict]:  # type: ignore[type-arg]
    return [
        orjson.loads(r.value)
        for r in ns.read_topic(ns.settings.parked_topic, expect=expect, timeout=30)
    ]


def test_receiver_down_then_back_gets_every_alert_once_in_order_per_account(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    receiver = Receiver(check=signed_by(SECRET))
    routes = routes_file(
        tmp_path,
        f"""
[retry]
max_attempts = 1000
max_seconds = 600
initial_delay = 0.1
max_delay = 0.5

[outputs.soc]
type = "webhook"
url = "{receiver.url}/hook"
secret_env = "TEST_HOOK_SECRET"

[[routes]]
name = "all"
outputs = ["soc"]
versions = "all"
""",
    )
    alerts = versions(n_accounts=5, per_account=8)
    feed = Feed(ns, routes, {"TEST_HOOK_SECRET": SECRET}).start()
    try:
        assert produce_alerts(ns, alerts) == 40
        # down: connection refused, for long enough that every partition with alerts retries
        wait_for(
            lambda: feed.metric("pw_alert_deliveries_total", output="soc", result="retried") >= 12,
            60,
            "retries while refused",
        )
        receiver.set("503")
        wait_for(lambda: receiver.refused >= 8, 60, "retries answered 503")
        assert receiver.count() == 0
        receiver.set("up")
        wait_for(lambda: receiver.count() >= 40, 60, "every alert once the receiver is back")
        wait_for(
            lambda: committed_everything(
                ns, ns.settings.alert_feed_group, ns.settings.alerts_topic
            ),
            30,
            "offsets committed",
        )
        # one more alert per account: each partition is delivered in order, so anything sent
        # twice would arrive before these
        last = [sample_alert(account=f"A-{a}", window="last") for a in range(5)]
        assert produce_alerts(ns, last) == 5
        wait_for(
            lambda: (
                {orjson.loads(i.body)["alert_id"] for i in receiver.received}
                >= {x["alert_id"] for x in last}
            ),
            60,
            "the last alerts",
        )
        bodies = [orjson.loads(item.body) for item in receiver.received]
        assert len(bodies) == 45 and not receiver.rejected
        for a in range(5):
            assert [b for b in bodies if b["account_id"] == f"A-{a}"][-1] == last[a]
        bodies = [b for b in bodies if b not in last]
        assert sorted(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in bodies) == sorted(
            orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts
        )
        for a in range(5):
            account = f"A-{a}"
            sent = [(x["alert_id"], x["count"]) for x in alerts if x["account_id"] == account]
            got = [(x["alert_id"], x["count"]) for x in bodies if x["account_id"] == account]
            assert got == sent, f"order of {account}"
        wait_for(
            lambda: committed_everything(
                ns, ns.settings.alert_feed_group, ns.settings.alerts_topic
            ),
            30,
            "offsets committed",
        )
        assert feed.metric("pw_alert_deliveries_total", output="soc", result="delivered") == 45
        assert feed.metric("pw_alert_deliveries_total", output="soc", result="parked") == 0
        assert feed.metric("pw_alert_delivery_seconds_count", output="soc") == 45
    finally:
        feed.stop()
        receiver.close()


def test_receiver_that_never_comes_back_is_parked_then_redelivered_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    first, second, strict = (
        Receiver(check=signed_by(SECRET)),
        Receiver(check=signed_by(SECRET)),
        Receiver(),
    )
    hook = 'type = "webhook"\nsecret_env = "TEST_HOOK_SECRET"'
    routes = routes_file(
        tmp_path,
        f"""
[retry]
max_attempts = 3
max_seconds = 30
initial_delay = 0.05
max_delay = 0.1

[outputs.first]
{hook}
url = "{first.url}/a"

[outputs.second]
{hook}
url = "{second.url}/b"

[outputs.strict]
{hook}
url = "{strict.url}/c"

[[routes]]
name = "both"
outputs = ["first", "second"]
versions = "all"

[[routes]]
name = "critical-only"
min_severity = "critical"
outputs = ["strict"]
""",
    )
    alerts = [sample_alert(account=f"A-{i % 3}", window=f"w{i}") for i in range(6)]
    alerts.append(sample_alert(account="A-9", severity="critical", window="crit"))
    strict.set("400")  # refuses the payload: not retried, parked at once
    feed = Feed(ns, routes, {"TEST_HOOK_SECRET": SECRET}).start()
    try:
        produce_alerts(ns, alerts)
        parked = read_parked(ns, expect=15)
        assert len(parked) == 15  # 7 alerts x 2 outputs, and the critical one for strict
        by_output = {
            name: [p for p in parked if p["output"] == name]
            for name in ("first", "second", "strict")
        }
        assert [len(v) for v in by_output.values()] == [7, 7, 1]
        assert all(
            p["attempts"] == 3 and "Connect" in p["error"]
            for p in by_output["first"] + by_output["second"]
        )
        [refused] = by_output["strict"]
        assert refused["attempts"] == 1 and refused["error"].startswith("HTTP 400")
        assert (
            refused["alert"] == alerts[-1]
            and refused["source"]["topic"] == ns.settings.alerts_topic
        )
        assert {p["alert"]["alert_id"] for p in by_output["first"]} == {
            a["alert_id"] for a in alerts
        }
        wait_for(
            lambda: committed_everything(
                ns, ns.settings.alert_feed_group, ns.settings.alerts_topic
            ),
            30,
            "offsets committed after parking",
        )
        assert feed.metric("pw_alert_deliveries_total", output="first", result="parked") == 7
        assert feed.metric("pw_alert_deliveries_total", output="first", result="retried") == 14
    finally:
        feed.stop()

    try:
        # `first` comes back: redeliver only its alerts; the others stay parked
        first.set("up")
        run = feed.cli("alerts", "redeliver", "--output", "first")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "redelivered 7, parked again 0, left parked for other outputs 8" in run.stdout
        assert first.count() == 7 and not first.rejected and second.count() == 0
        assert sorted(orjson.loads(r.body)["alert_id"] for r in first.received) == sorted(
            a["alert_id"] for a in alerts
        )

        # `second` is still down: a plain redeliver parks its alerts again (strict's 400 too)
        run = feed.cli("alerts", "redeliver")
        assert run.returncode == 1 and "redelivered 0, parked again 8" in run.stdout, (
            run.stdout + run.stderr
        )

        second.set("up")
        strict.set("up")
        run = feed.cli("alerts", "redeliver")
        assert run.returncode == 0 and "redelivered 8, parked again 0" in run.stdout, (
            run.stdout + run.stderr
        )
        assert second.count() == 7 and strict.count() == 1

        # nothing is sent twice by later runs
        run = feed.cli("alerts", "redeliver")
        assert "redelivered 0, parked again 0, left parked for other outputs 0" in run.stdout, (
            run.stdout + run.stderr
        )
        assert (first.count(), second.count(), strict.count()) == (7, 7, 1)
        again = [p for p in read_parked(ns, expect=15 + 8 + 8) if p["output"] == "second"]
        assert max(p["redeliveries"] for p in again) == 1 and max(p["attempts"] for p in again) == 6
    finally:
        for r in (first, second, strict):
            r.close()


def test_bad_routes_file_fails_at_start_naming_the_field(kafka_broker: str, tmp_path: Path) -> None:
    ns = Namespace(tmp_path)
    routes = routes_file(
        tmp_path,
        '[outputs.x]\ntype = "pager"\nurl = "http://127.0.0.1:1/"\n[[routes]]\nname = "r"\noutputs = ["x"]\n',
    )
    run = Feed(ns, routes).cli("alerts", "feed", timeout=60)
    assert run.returncode == 2
    assert "outputs.x: Input tag 'pager'" in run.stderr
    routes.write_text(
        '[outputs.x]\ntype = "webhook"\nurl = "http://127.0.0.1:1/"\nsecret_env = "NOT_SET_ANYWHERE"\n[[routes]]\nname = "r"\noutputs = ["x"]\n'
    )
    run = Feed(ns, routes).cli("alerts", "feed", timeout=60)
    assert (
        run.returncode == 2
        and "outputs.x.secret_env: environment variable NOT_SET_ANYWHERE is not set" in run.stderr
    )


def test_identical_repeat_of_an_alert_version_is_delivered_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    """After a worker crash an alert version may be published twice (outside the transaction)."""
    ns = Namespace(tmp_path)
    receiver = Receiver(check=signed_by(SECRET))
    routes = routes_file(
        tmp_path,
        f"""
[outputs.soc]
type = "webhook"
url = "{receiver.url}/hook"
secret_env = "TEST_HOOK_SECRET"

[[routes]]
name = "all"
outputs = ["soc"]
versions = "all"
""",
    )
    receiver.set("up")
    first = sample_alert(account="A-1", count=1, window="w")
    grown = sample_alert(account="A-1", count=2, window="w")
    other = sample_alert(account="A-1", count=1, window="other")
    feed = Feed(ns, routes, {"TEST_HOOK_SECRET": SECRET}).start()
    try:
        assert produce_alerts(ns, [first, first, grown, grown, other]) == 5
        wait_for(
            lambda: committed_everything(
                ns, ns.settings.alert_feed_group, ns.settings.alerts_topic
            ),
            60,
            "offsets committed",
        )
        last = sample_alert(
            account="A-1", count=1, window="last"
        )  # after it, nothing of the five can come
        assert produce_alerts(ns, [last]) == 1
        wait_for(
            lambda: any(
                orjson.loads(i.body)["alert_id"] == last["alert_id"] for i in receiver.received
            ),
            60,
            "the last alert",
        )
        got = [
            (b["alert_id"], b["count"]) for b in (orjson.loads(i.body) for i in receiver.received)
        ]
        assert got == [
            (first["alert_id"], 1),
            (grown["alert_id"], 2),
            (other["alert_id"], 1),
            (last["alert_id"], 1),
        ]
    finally:
        feed.stop()
        receiver.close()
