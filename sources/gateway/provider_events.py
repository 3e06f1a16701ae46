"""What every event of a request to the gateway carries: who (the principal), from where, when.

`base_event` is the start of every `auth.login` and SP-API call event; `session_id` is a hash
of the gateway token, never the token.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pipeline.event import format_ms
from sources.gateway.credentials import Principal, token_hash

if TYPE_CHECKING:
    from sources.gateway.app import Gateway

ADAPTER = "sp-api-gateway"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def base_event(
    gw: Gateway, principal: Principal, request: web.Request, received: int, token: str | None
) -> dict[str, Any]:
    source: dict[str, str] = {}
    if request.remote:
        source["ip"] = request.remote
    agent = request.headers.get("user-agent")
    if agent:
        source["user_agent"] = agent[:1024]
    if token:
        source["session_id"] = token_hash(token)[:16]
    return {
        "event_id": f"gw-{uuid.uuid4().hex}",
        "occurred_at": format_ms(received),
        "account_id": gw.config.account_id,
        "actor": {
            "type": "provider",
            "provider_id": principal.provider_id,
            "principal_id": principal.principal_id,
        },
        "source": source,
    }
