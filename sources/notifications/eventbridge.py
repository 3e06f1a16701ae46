"""Notifications from Amazon EventBridge, through an API destination: an authenticated HTTP endpoint.

Amazon delivers SP-API notifications to a partner event source
(`aws.partner/sellingpartnerapi.amazon.com/{account}/{app}`); a rule on that bus targets an API
destination pointing here. The API destination's connection authenticates with an API key: its
header name is `PW_NOTIFY_EVENTBRIDGE_HEADER`, its value `PW_NOTIFY_EVENTBRIDGE_KEY` (compared in
constant time; without a key every request is refused). The body is the EventBridge event, the
notification in its `detail` (a rule whose input is `$.detail` sends the notification alone:
both are read).

Answers: 200 once Kafka acknowledged the events (or the notification was already stored);
401 without the right key; 413 over 256 KiB; 400 for a body that is not a notification (kept as
a `notification.received` event saying why); 503 when Kafka did not acknowledge, which
EventBridge retries (with backoff, up to 24 hours by default): nothing is lost.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from sources.notifications import parse
from sources.notifications.events import Target, to_events, unreadable_event
from sources.notifications.seen import Seen

log = structlog.get_logger(__name__)

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
KEY_VARIABLE = "PW_NOTIFY_EVENTBRIDGE_KEY"


class EventBridgeEndpoint:
    def __init__(
        self, emit: Emit, seen: Seen, target: Target, header: str, key: str | None = None
    ) -> None:
        self.emit = emit
        self.seen = seen
        self.target = target
        self.header = header
        self.key = (os.environ.get(KEY_VARIABLE, "") if key is None else key).encode()
        self.counts: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def app(self) -> web.Application:
        app = web.Application(client_max_size=parse.MAX_BYTES)
        app.router.add_post("/eventbridge", self.receive)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return _json(200, {"counts": self.counts})

    async def receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(self.header, "").encode()
        if not self.key or not hmac.compare_digest(given, self.key):
            self._count("unauthorized")
            return _json(401, {"error": "missing or wrong key"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count("too_large")
            return _json(413, {"error": f"larger than {parse.MAX_BYTES} bytes"})
        received_ms = time.time_ns() // 1_000_000
        try:
            notification = parse.from_bytes(body)
        except parse.NotANotification as exc:
            self._count("unreadable")
            ident = request.headers.get("x-amz-event-id", "") or hashlib.sha256(body).hexdigest()
            event = unreadable_event(body, str(exc), self.target, ident, received_ms)
            try:
                await self.emit([event])
            except Exception as failure:
                log.warning("notifications.eventbridge_emit_failed", error=str(failure)[:300])
                return _json(503, {"error": "not stored, send again"})
            return _json(400, {"error": f"not a notification: {exc}"})
        identity = notification.identity
        if self.seen.has(identity):
            self._count("duplicates")
            return _json(200, {"stored": 0, "duplicate": True})
        extra = {"eventbridge_request": True}
        events = to_events(notification, self.target, received_ms, extra)
        try:
            await self.emit(events)
        except Exception as exc:
            self._count("emit_failed")
            log.warning("notifications.eventbridge_emit_failed", error=str(exc)[:300])
            return _json(503, {"error": "not stored, send again"})
        self.seen.mark([identity])
        self._count("stored")
        return _json(200, {"stored": len(events), "event_ids": [e["event_id"] for e in events]})


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
