"""The gateway's HTTP service (aiohttp): LWA-compatible token endpoint, SP-API proxy, documents.

- `POST /auth/o2/token` (token_exchange.py): Login with Amazon's form and answer.
  `grant_type=refresh_token` with a principal's client id, secret and refresh token (or
  `client_credentials` with a scope, for grantless calls) returns a short-lived opaque gateway
  access token. Every exchange by a known client id is an `auth.login` event (failed and
  refused ones too).
- Any SP-API path (proxy.py): the principal sends `x-amz-access-token: <gateway token>`; the
  gateway classifies the call (classify.py), checks it in enforce mode (enforce.py), forwards it
  to the SP-API endpoint with the seller's access token (lwa.py), and records its events with
  the HTTP status and Amazon's submission id. A refusal is SP-API-shaped (`{"errors": [...]}`,
  403 or 429) and recorded with outcome `denied`; Amazon never sees the call.
- `/_pw/documents/{handle}` (documents.py): feed and report documents move through pre-signed
  URLs, not the SP-API host. The gateway hands out its own URL in their place, so a feed's
  content passes through it (each JSON listings feed message becomes an event) and a report
  download is seen. Handles are random, single-purpose and live 5 minutes, like Amazon's URLs.
- Restricted Data Tokens stay here: `createRestrictedDataToken` answers with a gateway handle
  that works only through the gateway, for the principal that asked, while the RDT lives.
- `POST /_pw/alerts` (kill_switch.py): an alert route suspends a provider.

`Gateway` holds the state the handlers share; service.py runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from pipeline.marketplaces import site_code
from sources.gateway.config import GatewayConfig
from sources.gateway.documents import Document, Rdt, serve_document
from sources.gateway.enforce import RateBudget
from sources.gateway.kill_switch import suspend_on_alert
from sources.gateway.ledger import AuthorizationView
from sources.gateway.lwa import SellerTokens
from sources.gateway.memory import Memory
from sources.gateway.proxy import handle_call
from sources.gateway.store import Store
from sources.gateway.token_exchange import exchange

log = structlog.get_logger(__name__)

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        emit: Emit,
        seller: SellerTokens,
        session: aiohttp.ClientSession,
        view: AuthorizationView | None,
    ) -> None:
        self.config = config
        self.store = store
        self.emit = emit
        self.seller = seller
        self.session = session
        self.view = view
        self.memory = Memory(store)
        self.budget = RateBudget(config.provider_rate, config.provider_burst)
        self.documents: dict[str, Document] = {}
        self.rdts: dict[str, Rdt] = {}
        default = site_code(config.default_marketplace) if config.default_marketplace else None
        self.default_site = default
        self.counts: dict[str, int] = {}
        #: the alert feed webhook's secret (an environment variable: secrets are no settings)
        self.alert_secret = os.environ.get("PW_GATEWAY_ALERT_SECRET", "")

    # -- the app ---------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/auth/o2/token", self.token)
        app.router.add_route("*", "/_pw/documents/{handle}", self.document)
        app.router.add_get("/_pw/health", self.health)
        app.router.add_post("/_pw/alerts", self.alert)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        return app

    async def token(self, request: web.Request) -> web.Response:
        return await exchange(self, request)

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        return await handle_call(self, request)

    async def alert(self, request: web.Request) -> web.Response:
        return await suspend_on_alert(self, request)

    async def document(self, request: web.Request) -> web.StreamResponse:
        return await serve_document(self, request)

    async def health(self, request: web.Request) -> web.Response:
        caught_up = self.view is None or self.view.caught_up.is_set()
        return web.json_response(
            {"mode": self.config.mode, "ledger_caught_up": caught_up, "counts": self.counts},
            dumps=lambda d: orjson.dumps(d).decode(),
        )

    # -- events ----------------------------------------------------------------------------------

    async def record(self, events: list[dict[str, Any]], always: bool = False) -> None:
        if not self.config.record_reads and not always:
            events = [e for e in events if e["action"] != "data.read"]
        if not events:
            return
        try:
            await self.emit(events)
        except Exception as exc:  # the broker is away: keep them, `drain` sends them later
            log.warning("gateway.emit_failed", error=str(exc), events=len(events))
            for event in events:
                self.store.queue(event["event_id"], event["account_id"], orjson.dumps(event))

    async def drain(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Send the events the broker did not take (the worker stores a repeated event id once)."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            queued = self.store.queued()
            if not queued:
                continue
            try:
                await self.emit([orjson.loads(payload) for _, _, payload in queued])
            except Exception as exc:
                log.warning("gateway.drain_failed", error=str(exc), queued=len(queued))
                continue
            self.store.dequeue([event_id for event_id, _, _ in queued])

    def tally(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
