"""The LWA-compatible token endpoint (`POST /auth/o2/token`): a principal's gateway credentials
for a short-lived gateway access token. Every exchange by a known client id is an `auth.login`
event (failed and refused ones too)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sources.gateway.credentials import Principal
from sources.gateway.provider_events import ADAPTER, base_event, now_ms
from sources.gateway.replies import json_reply, lwa_error

if TYPE_CHECKING:
    from sources.gateway.app import Gateway


async def exchange(gw: Gateway, request: web.Request) -> web.Response:
    received = now_ms()
    form = await request.post()
    grant_type = str(form.get("grant_type", ""))
    client_id = str(form.get("client_id", ""))
    secret = str(form.get("client_secret", ""))
    refresh = str(form.get("refresh_token", ""))
    scope = str(form.get("scope", ""))
    if grant_type not in ("refresh_token", "client_credentials"):
        return lwa_error(
            400, "unsupported_grant_type", "grant_type must be refresh_token or client_credentials"
        )
    if not client_id or not secret or (grant_type == "refresh_token" and not refresh):
        return lwa_error(
            400, "invalid_request", "client_id, client_secret and refresh_token are required"
        )
    if grant_type == "client_credentials" and not scope:
        return lwa_error(400, "invalid_scope", "scope is required for client_credentials")
    loop = asyncio.get_running_loop()
    principal, problem = await loop.run_in_executor(
        None,
        gw.store.check_credentials,
        client_id,
        secret,
        refresh if grant_type == "refresh_token" else None,
    )
    if principal is None:
        gw.tally("token_unknown_client")
        return lwa_error(401, "invalid_client", "Client authentication failed")
    operation = f"lwa.{grant_type}"
    if problem is not None:
        outcome = "denied" if "suspended" in problem or "revoked" in problem else "failure"
        await gw.record(
            [login_event(gw, principal, request, received, operation, outcome, problem, scope)]
        )
        if outcome == "failure":
            return lwa_error(400, "invalid_grant", "The request has an invalid grant parameter")
        return lwa_error(400, "invalid_grant", f"PartnerWatch gateway: {problem}")
    token = gw.store.new_token(principal, gw.config.token_ttl)
    await gw.record(
        [login_event(gw, principal, request, received, operation, "success", None, scope, token)]
    )
    body: dict[str, Any] = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": gw.config.token_ttl,
    }
    if grant_type == "refresh_token":
        body["refresh_token"] = refresh
    return json_reply(200, body)


def login_event(
    gw: Gateway,
    principal: Principal,
    request: web.Request,
    received: int,
    operation: str,
    outcome: str,
    problem: str | None,
    scope: str,
    token: str | None = None,
) -> dict[str, Any]:
    event = base_event(gw, principal, request, received, token)
    event.update(action="auth.login", operation=operation, outcome=outcome)
    event["resource"] = {"type": "gateway_credential", "id": principal.client_id}
    origin: dict[str, Any] = {"adapter": ADAPTER, "method": "POST", "path": "/auth/o2/token"}
    if scope:
        origin["scope"] = scope[:200]
    if problem:
        origin["reason"] = problem[:500]
    event["origin"] = origin
    return event
