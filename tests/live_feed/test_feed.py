"""GET /v1/alerts/stream on a real worker and broker, read with a plain HTTP client."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import Namespace, wait_for
from partnerwatch.sse import SseError, open_stream
from pipeline.config import REPO_ROOT
from streams.alert_feed import SLOW_WRITE_SECONDS
from tests.integration.settle import read_to_end
from tests.live_feed.conftest import (
    AUTH,
    TOKEN,
    Reader,
    provider_event,
    same_partition,
    stream_url,
    unique,
)

pytestmark = pytest.mark.integration


def topic_alerts(
    ns: Namespace, accounts: set[str], expect: int
) -> list[tuple[int, int, dict[str, Any]]]:
    """(partition, offset, alert) of every record of these accounts on the alerts topic."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    deadline = time.monotonic() + 60
    while len(found) < expect and time.monotonic() < deadline:
        records = read_to_end(ns, ns.settings.alerts_topic)
        found = [
            (r.partition, r.offset, a)
            for r in records
            if (a := orjson.loads(r.value))["account_id"] in accounts
        ]
    return found


def test_no_token_no_stream_and_bad_parameters_are_refused(live: Namespace) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        with pytest.raises(SseError) as refused:
            open_stream(stream_url(live), headers)
        assert refused.value.status == 401
    with pytest.raises(SseError) as bad:
        open_stream(stream_url(live, "severity=urgent"), AUTH)
    assert bad.value.status == 400 and "severity" in bad.value.body
    with pytest.raises(SseError) as bad:
        open_stream(stream_url(live), AUTH | {"Last-Event-ID": "1.2.3.4.5.6.7.8.9"})
    assert bad.value.status == 400 and "Last-Event-ID" in bad.value.body


def test_clients_connected_before_the_attack_get_what_their_filters_select(live: Namespace) -> None:
    a1, a2, a3 = unique("A1"), unique("A2"), unique("A3")
    everything = Reader(stream_url(live), AUTH)
    critical = Reader(stream_url(live, "severity=critical"), AUTH)
    only_a2 = Reader(stream_url(live, f"account={a2}"), AUTH)
    a1_or_a3 = Reader(stream_url(live, f"account={a1}&account={a3}&severity=high"), AUTH)
    try:
        live.send(
            [
                provider_event(a1, "auth.credentials_create"),  # critical
                provider_event(a2, "report.download"),  # high
                provider_event(a3, "auth.credentials_create"),  # critical
            ]
        )
        mine = {a1, a2, a3}
        got = [a for a in everything.wait_alerts(3) if a["account_id"] in mine]
        assert sorted((a["account_id"], a["severity"]) for a in got) == [
            (a1, "critical"),
            (a2, "high"),
            (a3, "critical"),
        ]
        assert {a["account_id"] for a in critical.wait_alerts(2) if a["account_id"] in mine} == {
            a1,
            a3,
        }
        assert all(a["severity"] == "critical" for a in critical.alerts())
        assert [a["account_id"] for a in only_a2.wait_alerts(1)] == [a2]
        assert sorted(a["account_id"] for a in a1_or_a3.wait_alerts(2)) == sorted([a1, a3])
        # Nothing else arrives for the filtered ones: every alert above was fanned out to all four
        # before `everything` got it, so once a later alert each filter selects has arrived,
        # whatever the filters let through of the earlier ones has arrived too.
        live.send(
            [
                provider_event(a2, "auth.credentials_create", principal="later"),
                provider_event(a1, "auth.credentials_create", principal="later"),
            ]
        )
        assert [a["account_id"] for a in only_a2.wait_alerts(2)] == [a2, a2]
        assert [a["account_id"] for a in a1_or_a3.wait_alerts(3)][2] == a1
        assert [a["account_id"] for a in only_a2.alerts()] == [a2, a2]
        assert len(a1_or_a3.alerts()) == 3
    finally:
        for reader in (everything, critical, only_a2, a1_or_a3):
            reader.close()


def test_resume_from_any_event_id_gets_exactly_the_rest(live: Namespace) -> None:
    account = unique("R")
    reader = Reader(stream_url(live, f"account={account}"), AUTH)
    try:
        live.send(
            [
                provider_event(account, "auth.credentials_create", principal=f"p{i}")
                for i in range(6)
            ]
        )
        seen = reader.wait_alerts(6)
        ids = [e.id for e in reader.events if e.event == "alert"]
    finally:
        reader.close()
    on_topic = topic_alerts(live, {account}, 6)
    assert sorted(a["alert_id"] for a in seen) == sorted(a["alert_id"] for _, _, a in on_topic)
    assert all(i is not None for i in ids)
    # Resume after each event at once (the header for a client, the query parameter for a
    # browser's reconnect), and from 0; then one more alert: each stream gets exactly the rest,
    # then that one (no more than the rest: anything extra would come before it).
    resumed = [
        Reader(stream_url(live, f"account={account}"), AUTH | {"Last-Event-ID": str(last_id)})
        if k % 2
        else Reader(stream_url(live, f"account={account}&last_event_id={last_id}"), AUTH)
        for k, last_id in enumerate(ids)
    ]
    replay = Reader(stream_url(live, f"account={account}&last_event_id=0"), AUTH)
    try:
        live.send([provider_event(account, "auth.credentials_create", principal="p-last")])
        for k, reader in enumerate([*resumed, replay]):
            rest = seen[k + 1 :] if reader is not replay else seen
            got = reader.wait_alerts(len(rest) + 1)
            assert [a["alert_id"] for a in got[:-1]] == [a["alert_id"] for a in rest], (
                f"resume after event {k}"
            )
            assert got[-1]["alert_id"] not in {a["alert_id"] for a in seen}
            assert len({a["alert_id"] for a in got}) == len(got)
            assert reader.alerts() == got, f"more than the rest after event {k}"
    finally:
        for reader in [*resumed, replay]:
            reader.close()


def test_keep_alive_comments_on_a_quiet_stream(live: Namespace) -> None:
    """PW_SSE_KEEPALIVE is 2 s in these tests: a quiet stream still carries comment lines."""
    response = open_stream(stream_url(live, f"account={unique('quiet')}"), AUTH, timeout=30)
    try:
        lines = [response.readline() for _ in range(5)]
    finally:
        response.close()
    assert lines[0].startswith(b": connected ")
    assert b": keep-alive\n" in lines


def _raw_stream(ns: Namespace, query: str) -> socket.socket:
    """A client with a tiny receive buffer that sends its request and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", ns.port))
    sock.sendall(
        f"GET /v1/alerts/stream?{query} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    return sock


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 30.0) -> bytes:
    """Read (a little at a time) until `marker` has arrived; what was read."""
    sock.settimeout(timeout)
    got = b""
    while marker not in got:
        chunk = sock.recv(1)
        assert chunk, f"closed before {marker!r}: {got!r}"
        got += chunk
    return got


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    """Read until the server closes, or `timeout` seconds have passed (keep-alives included)."""
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not (chunk := sock.recv(65536)):
                break
            chunks.append(chunk)
    except TimeoutError:
        pass
    finally:
        sock.close()
    return b"".join(chunks)


def test_a_client_that_stops_reading_is_disconnected_with_a_message_and_resumes_without_loss(
    live: Namespace,
) -> None:
    account = unique("slow")
    query = f"account={account}&detector=provider_sensitive_action"  # 2000 events a minute also trip the rate rule
    sock = _raw_stream(live, query)
    head = _read_until(sock, b": connected ")  # subscribed before anything is produced
    # One alert gathering evidence: every event publishes a new version of it (about 1.5 kB each),
    # far more than the 16-record queue plus what the socket buffers hold (the server asks for a
    # 128 KiB send buffer, which Linux doubles: streams/web/alerts.py SEND_BUFFER).
    versions = 2000
    live.send(
        [
            provider_event(account, "auth.credentials_create", event_id=f"{account}-{i}")
            for i in range(versions)
        ]
    )
    on_topic = [
        (p, o, a)
        for p, o, a in sorted(topic_alerts(live, {account}, versions), key=lambda r: r[:2])
        if a["detector"] == "provider_sensitive_action"
    ]
    assert (
        len(on_topic) == versions and len({p for p, _, _ in on_topic}) == 1
    )  # one account: one partition
    # compared with the topic's own order (the versions' counts as they were published)
    topic_counts = [int(a["count"]) for _, _, a in on_topic]
    assert sorted(topic_counts) == list(range(1, versions + 1))
    # still not reading: a write that found the buffers full waits for it, longer than the
    # SLOW_WRITE_SECONDS that make it too slow (and far less than the 30 s that cut it off)
    time.sleep(SLOW_WRITE_SECONDS + 5)
    raw = head + _read_all(sock, timeout=20)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    blocks = body.decode(errors="replace").split("\n\n")
    assert blocks[-1] == "", "the server closed the stream after a whole event"
    message = blocks[-2]
    # (more than the queue came while it did not read, or it stopped during a read of the topic)
    assert message.startswith("event: error\ndata: ") and "too slow: " in message, message[:300]
    assert "reconnect with Last-Event-ID" in message
    # what a client had when it was dropped: the whole alert events before the message
    had = [b for b in blocks[:-2] if "\nevent: alert\n" in b]
    assert 0 < len(had) < versions
    counts = [int(orjson.loads(b.split("\ndata: ", 1)[1])["count"]) for b in had]
    assert counts == topic_counts[: len(had)]
    last_id = had[-1].split("\n", 1)[0].removeprefix("id: ")
    resumed = Reader(stream_url(live, query), AUTH | {"Last-Event-ID": last_id})
    try:
        # one more version after the rest: the stream must hold the rest, then it, and nothing else
        live.send(
            [provider_event(account, "auth.credentials_create", event_id=f"{account}-{versions}")]
        )
        rest = resumed.wait_alerts(versions - len(had) + 1)
        counts = [int(a["count"]) for a in resumed.alerts()]
        assert counts == [*topic_counts[len(had) :], versions + 1], (
            "every later version once, in the topic's order"
        )
    finally:
        resumed.close()
    assert len(rest) == versions - len(had) + 1


def test_alerts_tail_follows_the_feed_with_its_filters(live: Namespace) -> None:
    a1 = unique("T1")
    a2 = same_partition(a1, "T2", live.settings.topic_partitions)  # its alerts ordered with a1's
    last = {
        **provider_event(a1, "auth.credentials_create"),
        "actor": {"type": "provider", "provider_id": "PROV-LAST", "principal_id": "p-last"},
    }
    live.send(
        [
            provider_event(a1, "auth.credentials_create"),
            provider_event(a2, "report.download"),
            provider_event(a1, "report.download", principal="other"),
            last,
        ]
    )
    # `alerts tail --account` refuses an account with no stored event: wait for a1's
    wait_for(
        lambda: (
            live.scalar("SELECT count() FROM audit.events WHERE account_id = {a:String}", {"a": a1})
            >= 2
        ),
        60,
        "a1's events stored",
    )
    env = live.env | {"COLUMNS": "250"}
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "partnerwatch",
            "alerts",
            "tail",
            "--account",
            a1,
            "--severity",
            "critical",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []

    def pump() -> None:
        assert tail.stdout is not None
        for line in tail.stdout:
            out.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        # the last alert sent is printed: every alert before it on the partition was shown or left out
        wait_for(
            lambda: "provider=PROV-LAST" in "".join(out),
            60,
            "the last critical alert printed",
            interval=0.2,
        )
    finally:
        tail.terminate()
        tail.wait(10)
    text = "".join(out)
    assert f"account={a1}" in text and "CRITICAL" in text
    assert text.count("provider_sensitive_action") == 2 and text.index(
        "provider=PROV-X"
    ) < text.index("provider=PROV-LAST")
    line = next(x for x in out if "provider_sensitive_action" in x)
    assert line.startswith("2026-11-26 10:00:00Z CRITICAL"), (
        line
    )  # the event time, not the time it arrived
    assert "provider=PROV-X" in line
    assert a2 not in text and "provider_without_grant" not in text  # other account, lower severity
    assert (
        len({part for part, _, _ in topic_alerts(live, {a1, a2}, 4)}) == 1
    )  # as same_partition promised


def test_the_page_is_self_contained_and_served_without_the_token(live: Namespace) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{live.port}/alerts", timeout=10) as r:
        html = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp
    )
    assert 'data-token-required="true"' in html
    for external in ("http://", "https://", "src=", "<link", "@import", "innerHTML"):
        assert external not in html, external
    request = urllib.request.Request(
        f"http://127.0.0.1:{live.port}/v1/alerts/anything/ack",
        data=b'{"by": "x"}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_recent_alerts_come_from_the_warehouse_with_their_status(live: Namespace) -> None:
    account = unique("RECENT")
    live.send(
        [
            provider_event(account, "auth.credentials_create"),
            provider_event(account, "report.download"),
        ]
    )
    wait_for(
        lambda: (
            live.scalar(
                "SELECT count() FROM audit.alerts WHERE account_id = {a:String}", {"a": account}
            )
            >= 2
        ),
        60,
        "both alerts stored",
    )

    def recent(query: str) -> list[dict[str, object]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{live.port}/v1/alerts/recent?{query}", headers=AUTH
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return list(orjson.loads(response.read())["alerts"])

    both = recent(f"account={account}")
    assert sorted(a["detector"] for a in both) == [
        "provider_sensitive_action",
        "provider_without_grant",
    ]
    assert all(a["status"] == "open" and a["last_seen"] == "2026-11-26T10:00:00.000Z" for a in both)
    critical = recent(f"account={account}&severity=critical")
    assert [a["detector"] for a in critical] == ["provider_sensitive_action"]
    ack = urllib.request.Request(
        f"http://127.0.0.1:{live.port}/v1/alerts/{critical[0]['alert_id']}/ack",
        data=b'{"by": "dave"}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    urllib.request.urlopen(ack, timeout=30).close()
    again = recent(f"account={account}&severity=critical")
    assert again[0]["status"] == "acknowledged" and again[0]["status_by"] == "dave"
    assert [a["alert_id"] for a in recent(f"account={account}&limit=1")] == [
        min(a["alert_id"] for a in both)
    ]  # same time: by id
    for bad in ("severity=loud", "limit=0", "limit=5000"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            recent(bad)
        assert refused.value.code == 400
