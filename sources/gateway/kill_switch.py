"""The kill switch, pulled by an alert route: an alert delivered by the alert feed's `webhook`
output suspends its provider (every token revoked at once, none issued until resumed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from pipeline import webhook_signature
from pipeline.event import format_ms
from sources.gateway.provider_events import ADAPTER, now_ms
from sources.gateway.replies import json_body, json_reply

if TYPE_CHECKING:
    from sources.gateway.app import Gateway

log = structlog.get_logger("sources.gateway.app")


async def suspend_on_alert(gw: Gateway, request: web.Request) -> web.Response:
    """An alert delivered by the alert feed's `webhook` output: suspend its provider.

    The route in the routes file chooses the detectors and the severity; the request must
    carry the webhook signature made with PW_GATEWAY_ALERT_SECRET (the output's secret_env)
    and a timestamp within 5 minutes. The gateway checks the alert names this account and a
    provider, and, when set, PW_GATEWAY_SUSPEND_DETECTORS / _MIN_SEVERITY again.
    """
    body = await request.read()
    secret = gw.alert_secret
    if not secret or not signed(secret, request.headers, body):
        return json_reply(401, {"error": "unsigned, badly signed or stale"})
    alert = json_body(body)
    if not isinstance(alert, dict) or alert.get("account_id") != gw.config.account_id:
        return json_reply(202, {"suspended": None, "why": "not an alert of this account"})
    provider = alert.get("provider_id")
    detector, severity = str(alert.get("detector", "")), str(alert.get("severity", "info"))
    if not isinstance(provider, str) or not provider:
        return json_reply(202, {"suspended": None, "why": "the alert names no provider"})
    if not gw.config.suspends_on(detector, severity):
        return json_reply(
            202, {"suspended": None, "why": f"{detector}/{severity} does not suspend here"}
        )
    reason = f"alert {alert.get('alert_id', '?')}: {str(alert.get('title', detector))[:300]}"
    revoked = gw.store.suspend(provider, f"alert-route:{detector}", reason)
    if revoked >= 0:
        event = {
            "event_id": f"gw-suspend-{uuid.uuid4().hex}",
            "occurred_at": format_ms(now_ms()),
            "account_id": gw.config.account_id,
            "action": "permission.suspend",
            "actor": {"type": "seller", "principal_id": "partnerwatch-alert-route"},
            "operation": "alert route",
            "resource": {"type": "provider", "id": provider[:1024]},
            "origin": {
                "adapter": ADAPTER,
                "alert_id": str(alert.get("alert_id", ""))[:128],
                "detector": detector[:128],
                "severity": severity[:16],
            },
        }
        await gw.record([event], always=True)
    log.warning(
        "gateway.provider_suspended_by_alert", provider=provider, detector=detector, tokens=revoked
    )
    return json_reply(200, {"suspended": provider, "tokens_revoked": max(revoked, 0)})


def signed(secret: str, headers: Mapping[str, str], body: bytes, tolerance: float = 300.0) -> bool:
    """The alert feed webhook's Standard Webhooks signature (pipeline/webhook_signature.py), fresh."""
    try:
        webhook_signature.verify(secret, headers, body, tolerance)
    except (webhook_signature.SignatureError, ValueError):
        return False
    return True
