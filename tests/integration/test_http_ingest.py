"""POST /v1/events against a real worker and broker: accepted once, rejected dead-lettered, refusals write nothing."""

from __future__ import annotations

import http.client
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.settle import read_to_end
from tests.integration.test_pipeline import assert_chains_verify

pytestmark = pytest.mark.integration

TOKEN = "tok-" + "7" * 28
SECRET = "hmac-secret-" + "9" * 20


def http_env(**extra: str) -> dict[str, str]:
    return {"PW_API_TOKEN": TOKEN, "PW_INGEST_HMAC_SECRET": SECRET, **extra}


def post(
    ns: Namespace,
    body: bytes,
    headers: dict[str, str] | None = None,
    token: str | None = TOKEN,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection; (status, headers, decoded JSON answer)."""
    hdrs = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", ns.port, timeout=60)
    try:
        conn.request("POST", "/v1/events", body=body, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), orjson.loads(data) if data else None
    finally:
        conn.close()


def signed(
    body: bytes, ts: int | None = None, secret: str = SECRET, msg_id: str | None = None
) -> dict[str, str]:
    """Standard Webhooks headers, made by the standard's own library (the `standardwebhooks` package)."""
    when = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret.encode()).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def topic_count(ns: Namespace, topic: str, expect: int, timeout: float = 30.0) -> int:
    return len(ns.read_topic(topic, expect=expect, timeout=timeout))


def test_events_over_http_stored_once_rejects_dead_lettered(
    kafka_broker: str, tmp_path: Path
) -> None:
    ns = Namespace(tmp_path, extra_env=http_env())
    worker = Worker(ns).start()
    try:
        events = [e for e, _ in generate(1_200, seed=41)]
        statuses = []
        for i in range(0, 1_000, 250):  # four arrays of 250, one with bad events mixed in
            batch: list[Any] = list(events[i : i + 250])
            if i == 500:
                batch += [
                    {"event_id": "x"},
                    "not an object",
                    {**events[0], "action": "listing.teleport"},
                ]
            status, _, answer = post(ns, orjson.dumps(batch))
            statuses.append(status)
            assert status == 200, answer
            assert answer["accepted"] == 250
            assert answer["rejected"] == (3 if i == 500 else 0)
        reasons = [
            r["reason"] for r in answer_of(post(ns, orjson.dumps([{"event_id": "x"}])))["results"]
        ]
        assert reasons == ["missing_field"]
        # single object, bearer token; then a signed request (HMAC) of 199 events
        status, _, answer = post(ns, orjson.dumps(events[1_000]))
        assert status == 200 and answer["accepted"] == 1
        body = orjson.dumps(events[1_001:1_200])
        status, _, answer = post(ns, body, headers=signed(body), token=None)
        assert status == 200 and answer["accepted"] == 199, answer
        # retried by a client that missed the answer: the same events again, stored once
        status, _, answer = post(ns, orjson.dumps(events[:100]))
        assert status == 200 and answer["accepted"] == 100

        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 1_200,
            180,
            "1,200 stored events",
        )
        assert ns.sql("SELECT count(), uniqExact(event_id) FROM audit.events")[0] == [1_200, 1_200]
        assert_chains_verify(ns)
        # 3 bad events in the mixed batch + 1 in the single one: 4 dead letters, from HTTP
        letters = ns.read_topic(ns.settings.deadletter_topic, expect=4, timeout=30)
        assert len(letters) == 4
        assert {orjson.loads(r.value)["topic"] for r in letters} == {"POST /v1/events"}
        assert sorted(orjson.loads(r.value)["reason"] for r in letters) == [
            "missing_field",
            "missing_field",
            "not_object",
            "unknown_action",
        ]
        # events reached the actions topic keyed by account
        actions = ns.read_topic(ns.settings.actions_topic, expect=1_300, timeout=30)
        assert len(actions) == 1_300
        assert all(r.key == orjson.loads(r.value)["account_id"].encode() for r in actions)
        assert worker.alive()
    finally:
        worker.stop()


def answer_of(result: tuple[int, dict[str, str], Any]) -> Any:
    status, _, answer = result
    assert status == 200, answer
    return answer


def test_refused_requests_write_nothing(kafka_broker: str, tmp_path: Path) -> None:
    ns = Namespace(
        tmp_path,
        extra_env=http_env(
            PW_HTTP_MAX_BODY_BYTES="20000",
            PW_HTTP_MAX_EVENTS="10",
            PW_HTTP_RATE="0.2",
            PW_HTTP_BURST="3",
        ),
    )
    worker = Worker(ns).start()
    try:
        one = orjson.dumps(next(e for e, _ in generate(1, seed=2)))
        refusals = {
            "no credential": post(ns, one, token=None),
            "wrong token": post(ns, one, token="tok-wrong"),
            "bad signature": post(
                ns, one, headers=signed(one, secret="not-the-secret"), token=None
            ),
            "stale signature": post(
                ns, one, headers=signed(one, ts=int(time.time()) - 3600), token=None
            ),
            "no signature": post(
                ns,
                one,
                headers={k: v for k, v in signed(one).items() if k != "webhook-signature"},
                token=None,
            ),
            "no id": post(
                ns,
                one,
                headers={k: v for k, v in signed(one).items() if k != "webhook-id"},
                token=None,
            ),
            "signature of another body": post(ns, one, headers=signed(b"[]"), token=None),
            "signature under another id": post(
                ns, one, headers=signed(one) | {"webhook-id": "msg_other"}, token=None
            ),
            "old X-PW scheme": post(
                ns,
                one,
                headers={"X-PW-Timestamp": str(int(time.time())), "X-PW-Signature": "sha256=00"},
                token=None,
            ),
            "text/plain": post(ns, one, content_type="text/plain"),
            "oversized body": post(ns, b"[" + b",".join([one] * 200) + b"]"),
            "too many events": post(ns, b"[" + b",".join([one] * 11) + b"]"),
        }
        expected = {
            "no credential": 401,
            "wrong token": 401,
            "bad signature": 401,
            "stale signature": 401,
            "no signature": 401,
            "no id": 401,
            "signature of another body": 401,
            "signature under another id": 401,
            "old X-PW scheme": 401,
            "text/plain": 415,
            "oversized body": 413,
            "too many events": 413,
        }
        assert {k: v[0] for k, v in refusals.items()} == expected
        # the token bucket: a burst of 3 (the 413 for too many events took one), then 429
        codes = [post(ns, b"[]")[0] for _ in range(4)]
        assert codes[-1] == 429 and 200 in codes
        status, headers, answer = post(ns, one)
        assert status == 429 and int(headers["Retry-After"]) >= 1, answer
        # a signed request is a different credential with a bucket of its own
        body = b"[]"
        assert post(ns, body, headers=signed(body), token=None)[0] == 200
        # the same signed request twice: a replay (a stolen copy) is refused
        replay = signed(b"[1]")
        assert post(ns, b"[1]", headers=replay, token=None)[0] == 200
        status, _, answer = post(ns, b"[1]", headers=replay, token=None)
        assert status == 401 and "replay" in answer["error"], answer
        # the sender's retry of that message (same id, signed again with a new timestamp) is accepted
        retry = signed(b"[1]", ts=int(replay["webhook-timestamp"]) + 1, msg_id=replay["webhook-id"])
        assert post(ns, b"[1]", headers=retry, token=None)[0] == 200

        # The endpoint answers once its records are acknowledged, so the topics as they are now
        # hold everything these requests wrote (read to their end, no quiet window).
        assert read_to_end(ns, ns.settings.actions_topic) == []
        letters = [orjson.loads(r.value) for r in read_to_end(ns, ns.settings.deadletter_topic)]
        assert [d["raw"] for d in letters] == [
            "1",
            "1",
        ]  # only the signed, accepted requests' bad event
        assert worker.alive()
    finally:
        worker.stop()


def test_web_server_binds_loopback_only(kafka_broker: str, tmp_path: Path) -> None:
    """The worker's listening socket is 127.0.0.1 (not 0.0.0.0) with PW_WEB_HOST unset."""
    ns = Namespace(tmp_path, extra_env=http_env())
    worker = Worker(ns).start()
    try:
        port_hex = f"{ns.port:04X}"
        listening = []
        for line in (
            Path("/proc/net/tcp").read_text().splitlines()[1:]
            + Path("/proc/net/tcp6").read_text().splitlines()[1:]
        ):
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.endswith(":" + port_hex):
                listening.append(local.split(":")[0])
        assert listening == ["0100007F"], listening
    finally:
        worker.stop()
