"""HTTP views of the live feed and the alert lifecycle, on the worker's web server.

- `GET /v1/alerts/stream`: Server-Sent Events, one `alert` event per pw.alerts record (every
  version of an alert as it gathers evidence), filters `severity` (minimum), `account` and
  `detector` (repeatable), resumable with `Last-Event-ID` (or `?last_event_id=`); see
  streams/alert_feed.py for the position format. Keep-alive comments every PW_SSE_KEEPALIVE s.
- `POST /v1/alerts/{alert_id}/ack|resolve|reopen`: JSON `{"by": ..., "note": ...}`; 404 for an
  unknown alert, 409 when the action does not apply (sinks/alert_status.py). The recorded action
  is then published on `<prefix>alerts.status` for the alert feed's outputs (Alertmanager ends a
  resolved alert, OCSF closes the finding; sinks/alert_delivery/lifecycle.py); the answer's
  `outputs_notified` says whether that worked (the action is recorded either way).
- `GET /v1/alerts/recent`: the latest stored alerts (the warehouse: `audit.alerts` with each
  one's current status), newest evidence first, with the stream's filters and `limit` (1-1000,
  default 200): the page shows them before it goes live.
- `GET /alerts`: the live page (streams/web/alerts_page.py).

All but the page need the bearer token when PW_API_TOKEN is set (checked in front of every view
by streams/web/guard.py; the page is the same static document for everyone). The lifecycle POSTs also need
`Content-Type: application/json`: a cross-site form cannot send that without a CORS preflight,
which this server never grants, so a web page elsewhere cannot ack on the user's behalf.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import structlog
from aiohttp import web as aioweb
from faust import web

from pipeline.contract import SEVERITIES
from sinks.alert_delivery.lifecycle import status_record
from sinks.alert_status import (
    ACTIONS,
    BadRequest,
    StatusConflict,
    StatusRow,
    UnknownAlert,
    latest_alert,
    record_status,
)
from sinks.clickhouse import WarehouseError
from streams.alert_feed import (
    AlertFeed,
    AlertFilter,
    format_position,
    parse_position,
)
from streams.alert_publisher import publisher
from streams.app import app, settings
from streams.loader_instance import loader_service
from streams.web.alerts_page import CSP, PAGE

log = structlog.get_logger(__name__)

feed = AlertFeed(settings)
app.service(feed)  # type: ignore[arg-type]  # Faust accepts instances too

#: a write a client does not take for this long closes its connection
WRITE_TIMEOUT = max(30.0, 2 * settings.sse_keepalive)
#: the kernel's send buffer of a stream's socket, 128 KiB asked, which Linux doubles to 256 KiB:
#: without a cap it grows towards net.ipv4.tcp_wmem's maximum (4 MiB; 2.9 MB measured on loopback,
#: some 2,000 alert versions) for a client that stopped reading, which is memory per client and
#: hides a stalled client from the writes that should wait for it. It also limits one stream to
#: 256 KiB per round trip (2.5 MB/s at 100 ms), far above any alert rate.
SEND_BUFFER = 128 * 1024
_status_lock = asyncio.Lock()
#: seconds the lifecycle record may take to reach the broker before the answer says it did not
STATUS_PUBLISH_TIMEOUT = 10.0


async def _tell_outputs(warehouse: Any, row: StatusRow) -> bool:
    """Publish the recorded action for the alert feed; False (logged) when it did not get out."""
    loop = asyncio.get_running_loop()
    try:
        alert = await loop.run_in_executor(None, latest_alert, warehouse, row.alert_id)
    except WarehouseError:
        alert = None  # the feed falls back to the latest version it delivered
    try:
        await publisher.publish_status(
            row.account_id.encode(), status_record(row.as_dict(), alert), STATUS_PUBLISH_TIMEOUT
        )
    except Exception as exc:
        log.warning(
            "alert.status_not_published",
            alert_id=row.alert_id,
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
        return False
    return True


class _Gone(Exception):
    """The client went away, or stopped reading."""


class _Client:
    """The aiohttp side of one stream (streams/alert_feed.py `Connection`)."""

    def __init__(self, response: aioweb.StreamResponse, request: Any) -> None:
        self.response = response
        self.request = request

    def closed(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def write(self, data: bytes) -> None:
        if self.closed():
            raise _Gone
        try:
            # asyncio.timeout, not wait_for: no task of its own, so a write the socket takes at
            # once returns without giving up the loop (streams/alert_feed.py times the others)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self.response.write(data)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            if self.request.transport is not None:
                self.request.transport.abort()
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
        client = _Client(response, request)
        try:
            await response.prepare(request)  # type: ignore[arg-type]
            transport = request.transport  # type: ignore[attr-defined]  # aiohttp's request
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            position = resume if resume is not None else sub.start
            await client.write(
                b": connected " + format_position(position).encode() + b"\nretry: 2000\n\n"
            )
            await feed.deliver(sub, resume, client)
        except _Gone:
            pass
        finally:
            feed.unsubscribe(sub)
        return response


#: The latest version of the newest alerts (ReplacingMergeTree by count) and each one's current
#: status (its latest audit.alert_status row; none, or `reopened`, is open).
RECENT_QUERY = """
SELECT a.alert_id, a.detector, a.severity, a.account_id, a.provider_id, a.principal_id, a.title, a.summary,
       toString(a.first_seen), toString(a.last_seen), a.count,
       if(s.status IN ('', 'reopened'), 'open', s.status), s.actor
FROM (
    SELECT * FROM audit.alerts FINAL
    WHERE severity IN {severities:Array(String)}
      AND (empty({accounts:Array(String)}) OR has({accounts:Array(String)}, account_id))
      AND (empty({detectors:Array(String)}) OR has({detectors:Array(String)}, detector))
    ORDER BY last_seen DESC, alert_id LIMIT {limit:UInt32}
) AS a
LEFT JOIN (
    SELECT alert_id, argMax(status, at) AS status, argMax(actor, at) AS actor FROM audit.alert_status GROUP BY alert_id
) AS s ON s.alert_id = a.alert_id
ORDER BY a.last_seen DESC, a.alert_id
"""
RECENT_FIELDS = (
    "alert_id",
    "detector",
    "severity",
    "account_id",
    "provider_id",
    "principal_id",
    "title",
    "summary",
    "first_seen",
    "last_seen",
    "count",
    "status",
    "status_by",
)


def _iso(text: str) -> str:
    """ClickHouse's `2026-11-02 09:00:00.000` as the alerts' own `2026-11-02T09:00:00.000Z`."""
    return text.replace(" ", "T") + "Z" if text else text


@app.page("/v1/alerts/recent")
class RecentAlerts(web.View):
    async def get(self, request: web.Request) -> web.Response:
        query: Any = request.query
        try:
            alert_filter = AlertFilter(
                min_severity=query.get("severity", "info"),
                accounts=frozenset(query.getall("account", [])),
                detectors=frozenset(query.getall("detector", [])),
            )
            limit = int(query.get("limit", "200"))
            if not 1 <= limit <= 1000:
                raise ValueError("limit must be 1 to 1000")
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        warehouse = loader_service.warehouse
        if warehouse is None:
            return self.json({"error": "the warehouse is not open yet"}, status=503)
        params = {
            "severities": [
                s
                for s in SEVERITIES
                if SEVERITIES.index(s) >= SEVERITIES.index(alert_filter.min_severity)
            ],
            "accounts": sorted(alert_filter.accounts),
            "detectors": sorted(alert_filter.detectors),
            "limit": limit,
        }
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, warehouse.query, RECENT_QUERY, params
            )
        except WarehouseError as exc:
            return self.json({"error": str(exc)}, status=503)
        alerts = []
        for row in result.rows:
            alert = dict(zip(RECENT_FIELDS, row, strict=True))
            alert["first_seen"], alert["last_seen"] = (
                _iso(alert["first_seen"]),
                _iso(alert["last_seen"]),
            )
            alerts.append(alert)
        return self.json({"alerts": alerts})


@app.page("/v1/alerts/{alert_id}/{action}")
class AlertAction(web.View):
    async def post(self, request: web.Request, alert_id: str, action: str) -> web.Response:
        if action not in ACTIONS:
            return self.json(
                {"error": f"unknown action {action!r}: one of {', '.join(ACTIONS)}"}, status=404
            )
        if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.json({"error": "send JSON: Content-Type: application/json"}, status=415)
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("by", ""), str)
            or not isinstance(body.get("note", ""), str)
        ):
            return self.json(
                {"error": 'body must be JSON: {"by": "who", "note": "why"}'}, status=400
            )
        warehouse = loader_service.warehouse
        if warehouse is None:
            return self.json({"error": "the warehouse is not open yet"}, status=503)
        loop = asyncio.get_running_loop()
        try:
            async with _status_lock:  # check-then-insert, one at a time in this process
                row = await loop.run_in_executor(
                    None,
                    record_status,
                    warehouse,
                    alert_id,
                    action,
                    body.get("by", ""),
                    body.get("note", ""),
                    feed.account_of(alert_id),
                )
        except BadRequest as exc:
            return self.json({"error": str(exc)}, status=400)
        except UnknownAlert as exc:
            return self.json({"error": str(exc)}, status=404)
        except StatusConflict as exc:
            return self.json({"error": str(exc), "current": exc.current.as_dict()}, status=409)
        except WarehouseError as exc:
            return self.json({"error": str(exc)}, status=503)
        notified = await _tell_outputs(warehouse, row)
        log.info(
            "alert.status",
            alert_id=alert_id,
            status=row.status,
            actor=row.actor,
            outputs_notified=notified,
        )
        return self.json({**row.as_dict(), "outputs_notified": notified})


@app.page("/alerts")
class AlertsPage(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.html(
            PAGE.replace("__TOKEN_REQUIRED__", "true" if settings.api_token else "false"),
            headers={
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
