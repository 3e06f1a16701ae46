"""The provider-wide stage on the real broker: alerts within seconds, and state across SIGKILL.

A stolen credential of one provider principal sprays seller accounts from a new network; the
cross-account rule needs the principal's history and every account's events in one place. The
worker is killed with SIGKILL halfway through a spray, once after the stage checkpointed the
first half (the restarted stage must take it from the snapshot topic, not from the ledger) and
once right after the first half was folded (checkpointed or not: either the snapshot or the
ledger after the committed offsets brings it back). Both sprays must end in one alert naming the
acts from before the kill. The Sigma rules of PW_RULES_DIR run in the same stage.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

import detectors.sigma
from partnerwatch.common import http_open
from partnerwatch.local_worker import Namespace, Worker, metric, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ACCOUNTS = [f"A{n:04d}SELLER" for n in range(1, 7)]


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def history(principal: str, start: float) -> list[dict[str, Any]]:
    """90 minutes of a principal's ordinary work from its office, on two accounts."""
    return [
        {
            "event_id": f"{principal}-h{i}",
            "occurred_at": at(start + i * 5),
            "account_id": ACCOUNTS[i % 2],
            "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": principal},
            "source": {"ip": f"91.64.10.{10 + i}"},
            "action": "listing.update",
            "marketplace": "DE",
            "resource": {"type": "listing", "id": f"SKU-{i}"},
        }
        for i in range(18)
    ]


def hit(principal: str, n: int, minutes: float) -> dict[str, Any]:
    return {
        "event_id": f"{principal}-x{n}",
        "occurred_at": at(minutes),
        "account_id": ACCOUNTS[n],
        "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": principal},
        "source": {"ip": f"36.110.1.{20 + n}"},
        "action": "report.download",
        "resource": {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
    }


def alerts_of(ns: Namespace, detector: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The alerts of `detector` on the alerts topic, waiting for the first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            orjson.loads(r.value)
            for r in ns.read_topic(ns.settings.alerts_topic, expect=10**9, timeout=2)
        ]
        found = [a for a in found if a["detector"] == detector]
        if found:
            return found
    raise AssertionError(f"no {detector} alert")


def spray_alerts(ns: Namespace, principal: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every version of the principal's cross_account_spray alert on the alerts topic, waiting
    until one names the whole spray (four accounts)."""
    consumer = KafkaConsumer(
        ns.settings.alerts_topic,
        bootstrap_servers=ns.settings.kafka_broker,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                alert = orjson.loads(record.value)
                if (
                    alert["detector"] == "cross_account_spray"
                    and alert["principal_id"] == principal
                ):
                    found.append(alert)
            if any(f"{principal}-x3" in a["evidence_event_ids"] for a in found):
                return found
    finally:
        consumer.close()
    raise AssertionError(f"no complete spray alert for {principal}: {found}")


def first_half_checkpointed(ns: Namespace, principal: str) -> None:
    """Send the principal's history and the first two acts of its spray (from minute 0, onto a
    stage that has folded nothing yet), and wait until the stage has folded and checkpointed them."""
    first = [*history(principal, 0), hit(principal, 0, 120), hit(principal, 1, 121)]
    ns.send(first)
    wait_for(
        lambda: metric(ns.port, "pw_provider_stage_events_total") >= len(first),
        60,
        "first half folded",
    )
    wait_for(
        lambda: metric(ns.port, "pw_provider_stage_uncheckpointed_entries") == 0,
        30,
        "a checkpoint",
    )


def test_provider_stage_alerts_within_seconds_and_survives_sigkill(
    kafka_broker: str, tmp_path: Path
) -> None:
    examples = Path(detectors.sigma.__file__).parent / "examples"
    ns = Namespace(
        tmp_path, extra_env={"PW_PROVIDER_CHECKPOINT_SECONDS": "0.5", "PW_RULES_DIR": str(examples)}
    )
    worker = Worker(ns).start()
    try:
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_active") == 1,
            60,
            "the stage holds the ledger",
        )

        # 1. Killed after a checkpoint that holds the first half of the spray.
        first_half_checkpointed(ns, "p1")
        worker.kill()
        worker = Worker(ns).start()
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_active") == 1,
            60,
            "the restarted stage holds the ledger",
        )
        assert (
            metric(ns.port, "pw_provider_stage_restored_keys") == 2
        )  # prov-1 and the Sigma rules (no grants: no account)
        with http_open(f"http://127.0.0.1:{ns.port}/v1/health", timeout=10) as response:
            stage = orjson.loads(response.read())["provider_stage"]
            assert (stage["status"], stage["error"]) == ("running", ""), stage
        sent = time.monotonic()
        ns.send([hit("p1", 2, 122), hit("p1", 3, 123)])
        alerts = spray_alerts(ns, "p1")
        print(f"spray alert {time.monotonic() - sent:.2f} s after the last events were sent")
        # resumed at the checkpoint's offsets: only the second half was folded again
        assert metric(ns.port, "pw_provider_stage_events_total") == 2
        latest = max(alerts, key=lambda a: a["count"])
        assert {"p1-x0", "p1-x1", "p1-x2", "p1-x3"} <= set(latest["evidence_event_ids"])
        assert len({a["alert_id"] for a in alerts}) == 1

        # 2. Killed as soon as the first half is folded, checkpointed or not.
        first = [*history("p2", 200), hit("p2", 0, 320), hit("p2", 1, 321)]
        ns.send(first)
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_events_total") >= 2 + len(first),
            60,
            "first half folded",
        )
        worker.kill()
        worker = Worker(ns).start()
        wait_for(
            lambda: metric(ns.port, "pw_provider_stage_active") == 1,
            60,
            "the restarted stage holds the ledger",
        )
        ns.send([hit("p2", 2, 322), hit("p2", 3, 323)])
        latest = max(spray_alerts(ns, "p2"), key=lambda a: a["count"])
        assert {"p2-x0", "p2-x1", "p2-x2", "p2-x3"} <= set(latest["evidence_event_ids"])

        # 3. The Sigma rules of PW_RULES_DIR run live in the same stage.
        creds = {**hit("p2", 0, 400), "event_id": "p2-creds", "action": "auth.credentials_create"}
        del creds["resource"]
        ns.send([creds])
        found = alerts_of(ns, "sigma_provider_sensitive_action")
        assert [a["evidence_event_ids"] for a in found] == [["p2-creds"]]
    finally:
        worker.stop()
