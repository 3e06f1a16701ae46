"""One real worker for the live-feed tests (a token set, a small per-subscriber queue), and helpers."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka.partitioner.default import murmur2

from partnerwatch.local_worker import Namespace, Worker, wait_for
from partnerwatch.sse import SseEvent, events, open_stream
from tests.kafka_cleanup import SHARED

TOKEN = "live-feed-test-token"
QUEUE = 16


@pytest.fixture(scope="session")
def live(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    ns = Namespace(
        tmp_path_factory.mktemp("live"),
        extra_env={"PW_API_TOKEN": TOKEN, "PW_SSE_QUEUE_SIZE": str(QUEUE), "PW_SSE_KEEPALIVE": "2"},
    )
    SHARED.add(ns.name)  # used by every module here: its topics go when the session ends
    worker = Worker(ns).start()
    try:
        yield ns
    finally:
        worker.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def provider_event(
    account: str, action: str, event_id: str | None = None, principal: str = "intruder-1"
) -> dict[str, Any]:
    """A provider acting on an account where it has no grant: `auth.credentials_create` raises a
    critical provider_sensitive_action alert, `report.download` a high provider_without_grant one."""
    return {
        "event_id": event_id or unique("ev"),
        "occurred_at": "2026-11-26T10:00:00.000Z",
        "account_id": account,
        "actor": {"type": "provider", "provider_id": "PROV-X", "principal_id": principal},
        "action": action,
    }


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stream_url(ns: Namespace, query: str = "") -> str:
    return f"http://127.0.0.1:{ns.port}/v1/alerts/stream" + (f"?{query}" if query else "")


def same_partition(account: str, prefix: str, partitions: int = 4) -> str:
    """A new account id whose events (and alerts) land on `account`'s partition, so the order
    between the two accounts' alerts is the order their events were sent (the producer's
    default partitioner: murmur2 of the key)."""

    def partition(key: str) -> int:
        return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions

    while partition(candidate := unique(prefix)) != partition(account):
        pass
    return candidate


class Reader:
    """Reads one event stream in a thread, keeping every event, until closed.

    Returns once subscribed: the server joins the fan-out before it writes its `: connected`
    comment, so an alert produced after the constructor returns reaches this reader."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.response = open_stream(url, headers, timeout=60)
        first = self.response.readline()
        assert first.startswith(b": connected "), first
        self.events: list[SseEvent] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in events(self.response):
                self.events.append(event)
        except (OSError, ValueError):
            pass
        finally:
            self.ended.set()

    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(e.data) for e in self.events if e.event == "alert"]

    def wait_alerts(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        try:
            wait_for(
                lambda: len(self.alerts()) >= count,
                timeout,
                f"{count} alerts on the stream",
                interval=0.1,
            )
        except AssertionError as exc:
            others = [(e.event, e.data[:300]) for e in self.events if e.event != "alert"]
            raise AssertionError(
                f"{exc}: {len(self.alerts())} came, the stream ended: {self.ended.is_set()},"
                f" its other events: {others}"
            ) from None
        return self.alerts()

    def close(self) -> None:
        """Hang up (shutting the socket down wakes the reading thread)."""
        with contextlib.suppress(Exception):
            self.response.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        self.ended.wait(10)
