"""The gateway's HTTP service (aiohttp): LWA-compatible token endpoint, SP-API proxy, documents.

- `POST /auth/o2/token`: Login with Amazon's form and answer. `grant_type=refresh_token` with a
  principal's client id, secret and refresh token (or `client_credentials` with a scope, for
  grantless calls) returns a short-lived opaque gateway access token. Every exchange by a known
  client id is an `auth.login` event (failed and refused ones too).
- Any SP-API path: the principal sends `x-amz-access-token: <gateway token>`; the gateway
  classifies the call (classify.py), checks it in enforce mode (enforce.py), forwards it to the
  SP-API endpoint with the seller's access token (lwa.py), and records its events with the HTTP
  status and Amazon's submission id. A refusal is SP-API-shaped (`{"errors": [...]}`, 403 or
  429) and recorded with outcome `denied`; Amazon never sees the call.
- `/_pw/documents/{handle}`: feed and report documents move through pre-signed URLs, not the
  SP-API host. The gateway hands out its own URL in their place, so a feed's content passes
  through it (each JSON listings feed message becomes an event) and a report download is
  seen. Handles are random, single-purpose and live 5 minutes, like Amazon's URLs.
- Restricted Data Tokens stay here: `createRestrictedDataToken` answers with a gateway handle
  that works only through the gateway, for the principal that asked, while the RDT lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from yarl import URL

from pipeline import webhook_signature
from pipeline.config import Settings
from pipeline.contract import needs_marketplace
from pipeline.event import format_ms
from pipeline.marketplaces import marketplace_id, site_code
from sources.gateway import classify
from sources.gateway.config import GatewayConfig
from sources.gateway.enforce import Denial, RateBudget, decide
from sources.gateway.ledger import AuthorizationView, LedgerKafka
from sources.gateway.lwa import LwaError, SellerCredentials, SellerTokens
from sources.gateway.store import Principal, Store

log = structlog.get_logger(__name__)

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]

ADAPTER = "sp-api-gateway"
RDT_PREFIX = "Atz.sprdt|pw."
DOCUMENT_SECONDS = 300.0
FEED_CONTENT_SECONDS = 3600.0
#: Request headers passed to Amazon (besides x-amz* ones other than the access token).
_FORWARD = frozenset({"content-type", "accept", "user-agent", "x-amz-date"})
_RESPONSE_HEADERS = ("content-type", "x-amzn-requestid", "x-amzn-ratelimit-limit", "x-amzn-requestid")
_BAD_TOKEN = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "The access token you provided is revoked, malformed or invalid.",
        }
    ]
}


@dataclass
class Document:
    kind: str  # "feed" (upload) or "report" / "feed_result" (download)
    url: str
    document_id: str
    expires: float


@dataclass
class Rdt:
    token: str
    principal: Principal
    expires: float


class Memory:
    """What classify.py may ask about earlier calls (store-backed, feed content in memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.feeds: dict[str, tuple[bytes, float]] = {}

    def report_type(self, ident: str) -> str | None:
        return self.store.report_type(ident)

    def price(self, sku: str, marketplace: str) -> str | None:
        return self.store.price(sku, marketplace)

    def feed_document(self, document_id: str) -> bytes | None:
        found = self.feeds.get(document_id)
        return found[0] if found and found[1] > time.monotonic() else None

    def keep_feed(self, document_id: str, content: bytes) -> None:
        now = time.monotonic()
        for key in [k for k, (_, exp) in self.feeds.items() if exp <= now]:
            del self.feeds[key]
        self.feeds[document_id] = (content, now + FEED_CONTENT_SECONDS)


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

    async def health(self, request: web.Request) -> web.Response:
        caught_up = self.view is None or self.view.caught_up.is_set()
        return web.json_response(
            {"mode": self.config.mode, "ledger_caught_up": caught_up, "counts": self.counts},
            dumps=lambda d: orjson.dumps(d).decode(),
        )

    # -- the kill switch, pulled by an alert route ------------------------------------------------

    async def alert(self, request: web.Request) -> web.Response:
        """An alert delivered by the alert feed's `webhook` output: suspend its provider.

        The route in the routes file chooses the detectors and the severity; the request must
        carry the webhook signature made with PW_GATEWAY_ALERT_SECRET (the output's secret_env)
        and a timestamp within 5 minutes. The gateway checks the alert names this account and a
        provider, and, when set, PW_GATEWAY_SUSPEND_DETECTORS / _MIN_SEVERITY again.
        """
        body = await request.read()
        secret = self.alert_secret
        if not secret or not _signed(secret, request.headers, body):
            return _json(401, {"error": "unsigned, badly signed or stale"})
        alert = _json_body(body)
        if not isinstance(alert, dict) or alert.get("account_id") != self.config.account_id:
            return _json(202, {"suspended": None, "why": "not an alert of this account"})
        provider = alert.get("provider_id")
        detector, severity = str(alert.get("detector", "")), str(alert.get("severity", "info"))
        if not isinstance(provider, str) or not provider:
            return _json(202, {"suspended": None, "why": "the alert names no provider"})
        if not self.config.suspends_on(detector, severity):
            return _json(202, {"suspended": None, "why": f"{detector}/{severity} does not suspend here"})
        reason = f"alert {alert.get('alert_id', '?')}: {str(alert.get('title', detector))[:300]}"
        revoked = self.store.suspend(provider, f"alert-route:{detector}", reason)
        if revoked >= 0:
            event = {
                "event_id": f"gw-suspend-{uuid.uuid4().hex}",
                "occurred_at": format_ms(_now_ms()),
                "account_id": self.config.account_id,
                "action": "permission.suspend",
                "actor": {"type": "seller", "principal_id": "partnerwatch-alert-route"},
                "operation": "alert route",
                "resource": {"type": "provider", "id": provider[:1024]},
                "origin": {"adapter": ADAPTER, "alert_id": str(alert.get("alert_id", ""))[:128], "detector": detector[:128], "severity": severity[:16]},
            }
            await self.record([event], always=True)
        log.warning("gateway.provider_suspended_by_alert", provider=provider, detector=detector, tokens=revoked)
        return _json(200, {"suspended": provider, "tokens_revoked": max(revoked, 0)})

    # -- token exchange ------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        received = _now_ms()
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        client_id = str(form.get("client_id", ""))
        secret = str(form.get("client_secret", ""))
        refresh = str(form.get("refresh_token", ""))
        scope = str(form.get("scope", ""))
        if grant_type not in ("refresh_token", "client_credentials"):
            return _lwa_error(400, "unsupported_grant_type", "grant_type must be refresh_token or client_credentials")
        if not client_id or not secret or (grant_type == "refresh_token" and not refresh):
            return _lwa_error(400, "invalid_request", "client_id, client_secret and refresh_token are required")
        if grant_type == "client_credentials" and not scope:
            return _lwa_error(400, "invalid_scope", "scope is required for client_credentials")
        loop = asyncio.get_running_loop()
        principal, problem = await loop.run_in_executor(
            None, self.store.check_credentials, client_id, secret, refresh if grant_type == "refresh_token" else None
        )
        if principal is None:
            self._count("token_unknown_client")
            return _lwa_error(401, "invalid_client", "Client authentication failed")
        operation = f"lwa.{grant_type}"
        if problem is not None:
            outcome = "denied" if "suspended" in problem or "revoked" in problem else "failure"
            await self.record([self._login(principal, request, received, operation, outcome, problem, scope)])
            if outcome == "failure":
                return _lwa_error(400, "invalid_grant", "The request has an invalid grant parameter")
            return _lwa_error(400, "invalid_grant", f"PartnerWatch gateway: {problem}")
        token = self.store.new_token(principal, self.config.token_ttl)
        await self.record([self._login(principal, request, received, operation, "success", None, scope, token)])
        body: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": self.config.token_ttl}
        if grant_type == "refresh_token":
            body["refresh_token"] = refresh
        return _json(200, body)

    def _login(
        self, principal: Principal, request: web.Request, received: int, operation: str,
        outcome: str, problem: str | None, scope: str, token: str | None = None,
    ) -> dict[str, Any]:
        event = self._base(principal, request, received, token)
        event.update(action="auth.login", operation=operation, outcome=outcome)
        event["resource"] = {"type": "gateway_credential", "id": principal.client_id}
        origin: dict[str, Any] = {"adapter": ADAPTER, "method": "POST", "path": "/auth/o2/token"}
        if scope:
            origin["scope"] = scope[:200]
        if problem:
            origin["reason"] = problem[:500]
        event["origin"] = origin
        return event

    # -- the SP-API proxy ----------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        received = _now_ms()
        token = request.headers.get("x-amz-access-token", "")
        rdt: Rdt | None = None
        problem: str | None
        if token.startswith(RDT_PREFIX):
            rdt = self.rdts.get(_hash(token))
            if rdt is None:
                return _json(403, _BAD_TOKEN)
            principal = rdt.principal
            problem = self.store.credential_problem(principal.client_id)
            if problem is None and rdt.expires <= time.monotonic():
                problem = "the restricted data token has expired"
        else:
            holder = self.store.token_holder(token) if token else None
            if holder is None:
                self._count("unknown_token")
                return _json(403, _BAD_TOKEN)
            principal, problem = holder
        body = await request.read()
        call = classify.Call(
            method=request.method,
            path=request.path,
            query={k: request.query.getall(k) for k in request.query},
            body=_json_body(body),
            approval_id=request.headers.get("x-pw-approval-id") or None,
        )
        op = classify.plan(call, self.memory)
        call_id = f"gw-{uuid.uuid4().hex}"
        events = [self._call_event(principal, request, received, token, call, op, p, call_id) for p in op.planned]

        denial: Denial | None = None
        if problem is not None:
            denial = Denial(403, "Unauthorized", problem)
        elif not self.budget.take(principal.provider_id) and self.config.enforce:
            denial = Denial(429, "QuotaExceeded", f"provider {principal.provider_id} is over its call budget")
        elif self.config.enforce:
            denial = await self._judge(principal, call, op, events)
        if denial is not None:
            for event in events:
                event["outcome"] = "denied"
                event["origin"]["status"] = denial.status
                event["origin"]["reason"] = denial.reason[:1000]
            await self.record(events, always=True)
            self._count(f"denied_{denial.status}")
            return _json(denial.status, denial.body())

        try:
            status, headers, raw = await self._forward(request, body, op, rdt)
        except LwaError as exc:
            log.error("gateway.seller_token_failed", error=str(exc))
            status, headers, raw = 503, {}, orjson.dumps({"errors": [{"code": "ServiceUnavailable", "message": "The gateway could not get the seller's access token.", "details": ""}]})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("gateway.upstream_failed", error=str(exc))
            status, headers, raw = 502, {}, orjson.dumps({"errors": [{"code": "InternalFailure", "message": "The gateway could not reach the SP-API endpoint.", "details": ""}]})
        answer = _json_body(raw)
        raw = self._after(principal, call, op, status, answer, raw)
        submission = classify.submission_id(op.name, answer)
        failed = classify.failed(op.name, status, answer)
        for event, planned in zip(events, op.planned, strict=True):
            event["outcome"] = "failure" if failed else "success"
            event["origin"]["status"] = status
            if submission:
                event["origin"]["submission_id"] = submission
            request_id = headers.get("x-amzn-requestid")
            if request_id:
                event["origin"]["request_id"] = request_id[:128]
            if not failed and planned.new_price is not None and planned.sku and event.get("marketplace"):
                self.store.remember_price(planned.sku, event["marketplace"], planned.new_price)
        await self.record(events)
        self._count(f"forwarded_{status // 100}xx")
        response = web.Response(status=status, body=raw)
        for name in _RESPONSE_HEADERS:
            if name in headers:
                response.headers[name] = headers[name]
        return response

    def _call_event(
        self, principal: Principal, request: web.Request, received: int, token: str,
        call: classify.Call, op: classify.Operation, planned: classify.Planned, call_id: str,
    ) -> dict[str, Any]:
        event = self._base(principal, request, received, token)
        event["event_id"] = call_id + planned.suffix
        event["action"] = planned.action
        event["operation"] = op.name[:128]
        known = [s for s in planned.marketplaces if s != "?"]
        site = known[0] if known else None
        if site is None and needs_marketplace(planned.action):
            site = self.default_site
        if site is not None:
            event["marketplace"] = site
        if planned.resource:
            event["resource"] = {k: v[:1024] for k, v in planned.resource.items() if v}
        if planned.changes:
            event["changes"] = planned.changes
        if planned.amount:
            event["amount"] = planned.amount
        if call.approval_id:
            event["approval_id"] = call.approval_id[:128]
        origin: dict[str, Any] = {"adapter": ADAPTER, "method": call.method, "path": call.path[:512]}
        origin.update(planned.origin)
        if "?" in planned.marketplaces:
            origin["marketplace_ids"] = ",".join(call.marketplace_ids())[:256]
        event["origin"] = origin
        return event

    def _base(self, principal: Principal, request: web.Request, received: int, token: str | None) -> dict[str, Any]:
        source: dict[str, str] = {}
        if request.remote:
            source["ip"] = request.remote
        agent = request.headers.get("user-agent")
        if agent:
            source["user_agent"] = agent[:1024]
        if token:
            source["session_id"] = _hash(token)[:16]
        return {
            "event_id": f"gw-{uuid.uuid4().hex}",
            "occurred_at": format_ms(received),
            "account_id": self.config.account_id,
            "actor": {"type": "provider", "provider_id": principal.provider_id, "principal_id": principal.principal_id},
            "source": source,
        }

    async def _judge(
        self, principal: Principal, call: classify.Call, op: classify.Operation, events: list[dict[str, Any]]
    ) -> Denial | None:
        if self.view is None:
            return Denial(403, "Unauthorized", "enforce mode without the ledger: no grant is known")
        auth = self.view.state
        for event, planned in zip(events, op.planned, strict=True):
            old = planned.old_price
            if planned.action == "listing.price_change" and old is None and planned.new_price is not None:
                old = await self._lookup_price(call, planned)
                if old is not None:
                    planned.old_price = old
                    for change in event.get("changes", []):
                        if change["field"] == "price":
                            change["old"] = old
                    event["origin"]["old_price_from"] = "amazon"
            denial = decide(
                auth, event, sites=planned.marketplaces, sku=planned.sku, old_price=planned.old_price,
                new_price=planned.new_price, default_max_pct=self.config.max_price_change_pct,
            )
            if denial is not None:
                return denial
        return None

    async def _lookup_price(self, call: classify.Call, planned: classify.Planned) -> str | None:
        """The listing's current price, read from Amazon with the seller's token (enforce mode)."""
        if not self.config.price_lookup or not planned.sku or not planned.marketplaces:
            return None
        site = planned.marketplaces[0]
        seller_id = call.path.split("/")[4] if call.path.startswith("/listings/") else None
        if site == "?" or seller_id is None:
            return None
        url = URL(f"{self.config.upstream}/listings/2021-08-01/items/{seller_id}/") / planned.sku
        url = url.with_query(marketplaceIds=marketplace_id(site), includedData="attributes")
        try:
            token = await self.seller.get()
            async with self.session.get(url, headers={"x-amz-access-token": token}) as response:
                if response.status != 200:
                    return None
                doc = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, LwaError, orjson.JSONDecodeError):
            return None
        attributes = doc.get("attributes") if isinstance(doc, dict) else None
        if not isinstance(attributes, dict):
            return None
        price = classify.our_price(attributes.get("purchasable_offer"), site)
        if price is not None:
            self.store.remember_price(planned.sku, site, price)
        return price

    async def _forward(
        self, request: web.Request, body: bytes, op: classify.Operation, rdt: Rdt | None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in _FORWARD or (k.lower().startswith("x-amz") and k.lower() != "x-amz-access-token")
        }
        headers.update({k: v for k, v in request.headers.items() if k.lower().endswith("digitalsignature")})
        url = URL(self.config.upstream + request.raw_path, encoded=True)
        for attempt in (1, 2):
            headers["x-amz-access-token"] = rdt.token if rdt else await self.seller.get(op.upstream_scope)
            async with self.session.request(
                request.method, url, data=body or None, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                raw = await response.read()
                status = response.status
                out = {k.lower(): v for k, v in response.headers.items()}
            if status in (401, 403) and rdt is None and attempt == 1 and b"expired" in raw.lower():
                self.seller.forget(op.upstream_scope)  # Amazon says the cached token expired early
                continue
            break
        return status, out, raw

    # -- what the answer teaches, and what must not reach the provider ----------------------------

    def _after(
        self, principal: Principal, call: classify.Call, op: classify.Operation, status: int, answer: Any, raw: bytes
    ) -> bytes:
        if status >= 400 or not isinstance(answer, dict):
            return raw
        name = op.name
        changed = False
        if name == "createReport" and isinstance(answer.get("reportId"), str):
            body = call.body if isinstance(call.body, dict) else {}
            if isinstance(body.get("reportType"), str):
                self.store.remember_report(answer["reportId"], body["reportType"])
        elif name == "getReport":
            self._remember_report(answer)
        elif name == "getReports" and isinstance(answer.get("reports"), list):
            for report in answer["reports"]:
                self._remember_report(report)
        elif name in ("createFeedDocument", "getFeedDocument", "getReportDocument"):
            url = answer.get("url")
            ident = answer.get("feedDocumentId") or answer.get("reportDocumentId")
            if isinstance(url, str) and isinstance(ident, str):
                kind = {"createFeedDocument": "feed", "getFeedDocument": "feed_result", "getReportDocument": "report"}[name]
                answer["url"] = self._document_url(kind, url, ident)
                changed = True
        elif name == "createRestrictedDataToken" and isinstance(answer.get("restrictedDataToken"), str):
            expires_in = answer.get("expiresIn", 3600)
            seconds = float(expires_in) if isinstance(expires_in, (int, float)) else 3600.0
            handle = RDT_PREFIX + secrets.token_urlsafe(32)
            self.rdts[_hash(handle)] = Rdt(answer["restrictedDataToken"], principal, time.monotonic() + seconds)
            self._expire_rdts()
            answer["restrictedDataToken"] = handle
            changed = True
        elif name == "getListingsItem":
            attributes = answer.get("attributes")
            sku = answer.get("sku")
            sites = [s for s in classify.site_codes(call.marketplace_ids()) if s != "?"]
            if isinstance(attributes, dict) and isinstance(sku, str) and sites:
                price = classify.our_price(attributes.get("purchasable_offer"), sites[0])
                if price is not None:
                    self.store.remember_price(sku, sites[0], price)
        return orjson.dumps(answer) if changed else raw

    def _remember_report(self, report: Any) -> None:
        if not isinstance(report, dict) or not isinstance(report.get("reportType"), str):
            return
        for key in ("reportId", "reportDocumentId"):
            if isinstance(report.get(key), str):
                self.store.remember_report(report[key], report["reportType"])

    def _document_url(self, kind: str, url: str, document_id: str) -> str:
        now = time.monotonic()
        for key in [k for k, d in self.documents.items() if d.expires <= now]:
            del self.documents[key]
        handle = secrets.token_urlsafe(32)
        self.documents[handle] = Document(kind, url, document_id, now + DOCUMENT_SECONDS)
        return f"{self.config.base_url}/_pw/documents/{handle}"

    def _expire_rdts(self) -> None:
        now = time.monotonic()
        for key in [k for k, r in self.rdts.items() if r.expires <= now]:
            del self.rdts[key]

    async def document(self, request: web.Request) -> web.StreamResponse:
        document = self.documents.get(request.match_info["handle"])
        if document is None or document.expires <= time.monotonic():
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", content_type="application/xml")
        target = URL(document.url, encoded=True)
        if request.method == "PUT" and document.kind == "feed":
            content = await request.read()
            self.memory.keep_feed(document.document_id, content)
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "content-md5")}
            async with self.session.put(target, data=content, headers=headers) as uploaded:
                return web.Response(status=uploaded.status, body=await uploaded.read())
        if request.method == "GET" and document.kind in ("report", "feed_result"):
            async with self.session.get(target) as upstream:
                streamed = web.StreamResponse(status=upstream.status)
                for name in ("content-type", "content-encoding", "content-length"):
                    if name in upstream.headers:
                        streamed.headers[name] = upstream.headers[name]
                await streamed.prepare(request)
                async for chunk in upstream.content.iter_chunked(65536):
                    await streamed.write(chunk)
                await streamed.write_eof()
                return streamed
        return web.Response(status=405)

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

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def _signed(secret: str, headers: Mapping[str, str], body: bytes, tolerance: float = 300.0) -> bool:
    """The alert feed webhook's Standard Webhooks signature (pipeline/webhook_signature.py), fresh."""
    try:
        webhook_signature.verify(secret, headers, body, tolerance)
    except (webhook_signature.SignatureError, ValueError):
        return False
    return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _lwa_error(status: int, error: str, description: str) -> web.Response:
    return _json(status, {"error": error, "error_description": description})


def _json_body(raw: bytes) -> Any:
    if not raw or raw[:1] not in (b"{", b"[", b" ", b"\n", b"\t", b"\r"):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def client_ssl(config: GatewayConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.upstream_ca_file or None)
    return context


def server_ssl(config: GatewayConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def serve(
    config: GatewayConfig,
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event | None = None,
    started: Callable[[Gateway], None] | None = None,
    ledger_kafka: LedgerKafka | None = None,
) -> None:
    """Run the gateway until `stop` is set (or SIGINT/SIGTERM). With `config.ledger_follow`,
    `ledger_kafka` (`partnerwatch.gateway.ledger_kafka(settings)`) is how it reads the ledger."""
    if config.ledger_follow and ledger_kafka is None:
        raise ValueError("following the ledger needs ledger_kafka (partnerwatch.gateway.ledger_kafka)")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    credentials = SellerCredentials.load(config.seller_secret_file)
    store = Store(config.store_path(settings.data_dir))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(config), limit=200))
    view = AuthorizationView(store, config.account_id, settings.ledger_topic) if config.ledger_follow else None
    gateway = Gateway(config, store, emit, SellerTokens(credentials, config.lwa_url, session), session, view)
    tasks = [asyncio.create_task(gateway.drain(stop))]
    if view is not None and ledger_kafka is not None:
        tasks.append(asyncio.create_task(view.follow(ledger_kafka, stop)))
        if config.enforce:
            # Enforcing on an empty view would refuse every call: read the ledger first.
            waiter = asyncio.create_task(view.caught_up.wait())
            await asyncio.wait([waiter, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=server_ssl(config))
    await site.start()
    log.info("gateway.started", url=config.base_url, mode=config.mode, upstream=config.upstream)
    if started is not None:
        started(gateway)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if view is not None:
            view.save()
        await session.close()
        store.close()
