"""The pipeline end to end on the real broker and the embedded ClickHouse engine."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.ledger import CHAIN_QUERY, verify_stored
from pipeline.simulation.traffic import generate

pytestmark = pytest.mark.integration


def metric(ns: Namespace, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_chains_verify(ns: Namespace) -> None:
    accounts = [r[0] for r in ns.sql("SELECT DISTINCT account_id FROM audit.events")]
    assert accounts
    for account in accounts:
        rows = ns.sql(CHAIN_QUERY, {"account": account})
        assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)), f"gap in {account}"
        assert verify_stored(rows) is None, f"chain of {account} does not verify"


def test_ten_thousand_events_stored_once_with_verified_chains_and_alerts(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    try:
        stream = list(generate(10_000, seed=11, attack_rate=0.01))
        attacks = {e["event_id"] for e, kind in stream if kind == "ip_outside_allowlist"}
        assert 50 < len(attacks) < 200
        ns.send(e for e, _ in stream)
        ns.send(e for e, _ in stream[100:300])  # the same events again: stored once

        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 10_000,
            240,
            "10,000 stored events",
        )
        wait_for(
            lambda: metric(ns, "pw_events_duplicate_total") >= 200, 60, "200 duplicates dropped"
        )
        assert ns.scalar("SELECT count() FROM audit.events") == 10_000
        assert ns.scalar("SELECT uniqExact(event_id) FROM audit.events") == 10_000
        assert_chains_verify(ns)

        # Out-of-allowlist events raise alerts on the topic and in the warehouse; benign ones none
        # (other rules, such as a first use of a country, may flag the same attack events too;
        # a stateful rule names the earlier, benign, leg it compares with: impossible_travel's
        # previous position, so every alert rests on an attack event, only allowlist alerts on
        # nothing else).
        on_topic: set[str] = set()
        for record in ns.read_topic(ns.settings.alerts_topic, expect=len(attacks)):
            alert = orjson.loads(record.value)
            assert set(alert["evidence_event_ids"]) & attacks, f"alert on benign events: {alert}"
            if alert["detector"] != "impossible_travel":
                assert set(alert["evidence_event_ids"]) <= attacks, (
                    f"alert on benign events: {alert}"
                )
            if alert["detector"] == "ip_outside_allowlist":
                on_topic.update(alert["evidence_event_ids"])
        assert on_topic == attacks
        stored_sql = (
            "SELECT groupUniqArrayArray(evidence_event_ids) FROM audit.alerts"
            " WHERE detector = 'ip_outside_allowlist'"
        )
        wait_for(
            lambda: set(ns.scalar(stored_sql)) == attacks,
            60,
            "every attack in audit.alerts evidence",
        )
        assert worker.alive()
    finally:
        worker.stop()


def malformed_messages() -> list[bytes]:
    """100 messages that break the contract in different ways, one a 2 MB payload."""
    good = next(e for e, _ in generate(20, seed=3) if e["action"] == "listing.update")
    bad: list[bytes] = [
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"",
        b"{",
        b"null",
    ]
    variants = [
        {k: v for k, v in good.items() if k != "event_id"},
        {k: v for k, v in good.items() if k != "actor"},
        {**good, "action": "listing.teleport"},
        {**good, "occurred_at": "yesterday"},
        {**good, "occurred_at": "2026-11-02T10:00:00"},  # no offset
        {**good, "account_id": 12345},
        {**good, "actor": {"type": "provider", "principal_id": "p"}},  # no provider_id
        {**good, "marketplace": "XX"},
        {**good, "source": {"ip": "999.1.1.1"}},
        {**good, "event_id": "has spaces"},
        {**good, "amount": {"value": "ten", "currency": "EUR"}},
        {**good, "surprise": True},
    ]
    i = 0
    while len(bad) < 99:
        doc = dict(variants[i % len(variants)])
        if "event_id" in doc and doc["event_id"] != "has spaces":
            doc["event_id"] = f"bad-{i}"
        bad.append(orjson.dumps(doc))
        i += 1
    huge = dict(good, event_id="bad-huge", operation="x" * (2 * 1024 * 1024))
    bad.append(orjson.dumps(huge))
    assert len(bad) == 100
    return bad


def test_malformed_input_goes_to_deadletter_and_valid_events_around_it_are_stored(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    try:
        valid = [e for e, _ in generate(400, seed=21)]
        bad = malformed_messages()
        mixed: list[dict | bytes] = []
        for i, event in enumerate(valid):
            mixed.append(event)
            if i % 4 == 0 and bad:
                mixed.append(bad.pop())
        assert not bad
        ns.send(mixed)

        dead = ns.read_topic(ns.settings.deadletter_topic, expect=100)
        assert len(dead) == 100
        reasons = [orjson.loads(r.value) for r in dead]
        assert all(
            set(r) >= {"reason", "detail", "topic", "partition", "offset", "raw"} for r in reasons
        )
        assert {r["reason"] for r in reasons} >= {
            "not_json",
            "bad_encoding",
            "not_object",
            "missing_field",
            "unknown_action",
            "bad_timestamp",
            "wrong_type",
            "bad_value",
            "unknown_field",
            "too_large",
        }
        huge = next(r for r in reasons if r["reason"] == "too_large")
        assert huge["raw_size"] > 2 * 1024 * 1024 and huge["raw_truncated"]

        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 400, 120, "valid events stored"
        )
        assert ns.scalar("SELECT uniqExact(event_id) FROM audit.events") == 400
        assert_chains_verify(ns)
        assert worker.alive()
    finally:
        worker.stop()
