"""HTTP views of the live feed and the alert lifecycle, on the worker's web server.

- `GET /v1/alerts/stream`: Server-Sent Events, one `alert` event per pw.alerts record (every
  version of an alert as it gathers evidence), filters `severity` (minimum), `account` and
  `detector` (repeatable), resumable with `Last-Event-ID` (or `?last_event_id=`); see
  streams/alert_feed.py for the position format. Keep-alive comments every PW_SSE_KEEPALIVE s.
- `POST /v1/alerts/{alert_id}/ack|resolve|reopen`: JSON `{"by": ..., "note": ...}`; 404 for an
  unknown alert, 409 when the action does not apply (sinks/alert_status.py).
- `GET /alerts`: the live page (streams/web/alerts_page.py).

All but the page need the bearer token when PW_API_TOKEN is set (checked in front of every view
by streams/web/guard.py; the page is the same static document for everyone). The lifecycle POSTs also need
`Content-Type: application/json`: a cross-site form cannot send that without a CORS preflight,
which this server never grants, so a web page elsewhere cannot ack on the user's behalf.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog
from aiohttp import web as aioweb
from faust import web

from sinks.alert_status import ACTIONS, BadRequest, StatusConflict, UnknownAlert, record_status
from sinks.clickhouse import WarehouseError
from streams.alert_feed import (
    AlertFeed,
    AlertFilter,
    FeedRecord,
    Subscriber,
    format_position,
    parse_position,
)
from streams.app import app, settings
from streams.web.alerts_page import CSP, PAGE
from streams.web.sql import loader_service

log = structlog.get_logger(__name__)

feed = AlertFeed(settings)
app.service(feed)  # type: ignore[arg-type]  # Faust accepts instances too

#: a write a client does not take for this long closes its connection
WRITE_TIMEOUT = max(30.0, 2 * settings.sse_keepalive)
_status_lock = asyncio.Lock()


def _event(record: FeedRecord, position: list[int]) -> bytes:
    return (
        b"id: " + format_position(position).encode() + b"\nevent: alert\ndata: " + orjson.dumps(record.alert) + b"\n\n"
    )


class _Gone(Exception):
    """The client went away, or stopped reading."""


async def _write(response: aioweb.StreamResponse, request: Any, data: bytes) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise _Gone
    try:
        await asyncio.wait_for(response.write(data), WRITE_TIMEOUT)
    except (TimeoutError, ConnectionError, RuntimeError) as exc:
        if request.transport is not None:
            request.transport.abort()
        raise _Gone from exc


@app.page("/v1/alerts/stream")
class AlertStream(web.View):
    async def get(self, request: web.Request) -> Any:
        query: Any = request.query
        try:
            alert_filter = AlertFilter(
                min_severity=query.get("severity", "info"),
                accounts=frozenset(query.getall("account", [])),
                detectors=frozenset(query.getall("detector", [])),
            )
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        if not await feed.wait_ready(30.0):
            return self.json({"error": "the alert feed is not ready yet"}, status=503)
        last_id = request.headers.get("Last-Event-ID") or query.get("last_event_id") or ""
        try:
            resume = parse_position(last_id, feed.partitions) if last_id else None
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)

        sub = feed.subscribe(alert_filter)
        response = aioweb.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)  # type: ignore[arg-type]
            position = resume if resume is not None else list(sub.start)
            await _write(response, request, b": connected " + format_position(position).encode() + b"\nretry: 2000\n\n")
            await self._stream(response, request, sub, position, resume)
        except _Gone:
            pass
        finally:
            feed.unsubscribe(sub)
        return response

    async def _stream(
        self, response: aioweb.StreamResponse, request: Any, sub: Subscriber, position: list[int], resume: list[int] | None
    ) -> None:
        if resume is not None:
            try:
                async for record in feed.catch_up(resume, sub.start):
                    position[record.partition] = record.offset + 1
                    if sub.filter.matches(record.alert):
                        await _write(response, request, _event(record, position))
            except TimeoutError as exc:
                await _write(response, request, b"event: error\ndata: " + orjson.dumps({"error": str(exc)}) + b"\n\n")
                return
        last_write = time.monotonic()
        tick = min(1.0, settings.sse_keepalive)
        while not feed.closing:
            if sub.overflowed:
                message = (
                    f"too slow: more than {settings.sse_queue_size} alerts waiting for this client;"
                    " reconnect with Last-Event-ID to resume where it stopped"
                )
                await _write(response, request, b"event: error\ndata: " + orjson.dumps({"error": message}) + b"\n\n")
                log.warning("alert_feed.slow_subscriber_dropped", queued=sub.queue.qsize())
                return
            try:
                record = await asyncio.wait_for(sub.queue.get(), tick)
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                if time.monotonic() - last_write >= settings.sse_keepalive:
                    await _write(response, request, b": keep-alive\n\n")
                    last_write = time.monotonic()
                continue
            if record.offset < position[record.partition]:
                continue  # already sent by the catch-up read
            position[record.partition] = record.offset + 1
            await _write(response, request, _event(record, position))
            last_write = time.monotonic()


@app.page("/v1/alerts/{alert_id}/{action}")
class AlertAction(web.View):
    async def post(self, request: web.Request, alert_id: str, action: str) -> web.Response:
        if action not in ACTIONS:
            return self.json({"error": f"unknown action {action!r}: one of {', '.join(ACTIONS)}"}, status=404)
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.json({"error": "send JSON: Content-Type: application/json"}, status=415)
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("by", ""), str) or not isinstance(body.get("note", ""), str):
            return self.json({"error": 'body must be JSON: {"by": "who", "note": "why"}'}, status=400)
        warehouse = loader_service.warehouse
        if warehouse is None:
            return self.json({"error": "the warehouse is not open yet"}, status=503)
        loop = asyncio.get_running_loop()
        try:
            async with _status_lock:  # check-then-insert, one at a time in this process
                row = await loop.run_in_executor(
                    None, record_status, warehouse, alert_id, action, body.get("by", ""),
                    body.get("note", ""), feed.account_of(alert_id),
                )
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        except UnknownAlert as exc:
            return self.json({"error": str(exc)}, status=404)
        except StatusConflict as exc:
            return self.json({"error": str(exc), "current": exc.current.as_dict()}, status=409)
        except WarehouseError as exc:
            return self.json({"error": str(exc)}, status=503)
        log.info("alert.status", alert_id=alert_id, status=row.status, actor=row.actor)
        return self.json(row.as_dict())


@app.page("/alerts")
class AlertsPage(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.html(
            PAGE.replace("__TOKEN_REQUIRED__", "true" if settings.api_token else "false"),
            headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
        )
