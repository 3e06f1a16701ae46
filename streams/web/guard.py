"""Who may call the worker's HTTP API: one aiohttp middleware in front of every route.

Faust's web server serves whatever is registered on it; this middleware decides, in this order:

1. **Host** (DNS rebinding). When the worker listens on loopback, or `PW_WEB_ALLOWED_HOSTS` is
   set, a request whose `Host` is not a loopback name (`localhost`, `127.0.0.0/8`, `[::1]`, with or
   without a port), `PW_WEB_HOST` itself or a name from `PW_WEB_ALLOWED_HOSTS` is refused (421): a
   web page on `evil.example` that re-points its name to 127.0.0.1 still sends `Host: evil.example`.
2. **Route.** Only the routes in `ROUTES` are served; anything else, Faust's built-in pages
   (`/router`, `/table/...`, `/`, `/graph`, `/stats`) included, is 404. Faust's own settings turn
   those pages off too (streams/app.py); this is the second line, and it denies by default.
3. **Throttle.** A client address (IPv4 address, or IPv6 /64) that failed authentication more than
   `PW_WEB_AUTH_FAILURE_BURST` times, refilled at `PW_WEB_AUTH_FAILURE_RATE` per second, gets 429
   with `Retry-After` on every authenticated route, before its credential is even looked at (so
   a right guess cannot be told from a wrong one while throttled). Only failures count.
4. **Credential.** `Authorization: Bearer <PW_API_TOKEN>`, compared in constant time as bytes; a
   header that is not ASCII is a malformed credential (401), never an error. `POST /v1/events`
   may instead carry an HMAC signature, which its view checks against the body (and the shared
   replay ledger, streams/web/signatures.py) and reports back here with `failed()`.

Every refusal is counted in `pw_http_auth_failures_total{route,reason}`. With no `PW_API_TOKEN`
the token routes are open, which the worker only allows on loopback (`exposure_error`).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web as aioweb

from pipeline.config import Settings
from sinks import metrics

log = structlog.get_logger(__name__)

OPEN = "open"  # no credential
# Names of access levels, not credentials (S105).
TOKEN = "token"  # noqa: S105  bearer token (when PW_API_TOKEN is set)
TOKEN_OR_SIGNATURE = "token or signature"  # noqa: S105  bearer token, or an HMAC signature the view checks

#: Every route the worker serves, and what it needs. A route not listed here is never served.
ROUTES: dict[str, str] = {
    "/v1/health": OPEN,  # liveness for compose and load balancers: status and counts, no record data
    "/metrics": OPEN,  # Prometheus: counters and gauges, labels never carry ids or addresses
    # The live page's HTML and script, the same bytes for everyone: no account data. A browser's
    # navigation cannot carry a bearer header; the page asks for the token and sends it on every
    # request it makes (streams/web/alerts_page.py).
    "/alerts": OPEN,
    "/v1/sql": TOKEN,
    "/v1/alerts/stream": TOKEN,
    "/v1/alerts/recent": TOKEN,
    "/v1/alerts/{alert_id}/{action}": TOKEN,
    "/v1/events": TOKEN_OR_SIGNATURE,
}

#: request key: the credential the middleware accepted ("bearer"), or None (a signature to check)
CREDENTIAL = "pw.credential"
#: failed-auth buckets kept at most (refilled ones are dropped first)
MAX_CLIENTS = 100_000

Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def is_loopback(host: str) -> bool:
    """`localhost`, an address in 127.0.0.0/8 or ::1 (bare or bracketed), any case, trailing dot ok."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def exposure_error(settings: Settings) -> str | None:
    """Why the worker must not start with these settings: listening beyond loopback without a token."""
    if is_loopback(settings.web_host) or settings.api_token:
        return None
    return (
        f"PW_WEB_HOST={settings.web_host!r} listens beyond loopback, but PW_API_TOKEN is empty: anyone who"
        " reaches the port could read the audit record over /v1/sql. Set PW_API_TOKEN, or PW_WEB_HOST=127.0.0.1."
    )


def host_name(header: str) -> str | None:
    """The name in a Host header without its port (`[::1]:6066` -> `::1`), lower case; None if malformed."""
    value = header.strip().lower()
    if not value or any(c in value for c in " /\\@?#") or not value.isascii():
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        name, port = value[1:end], value[end + 2 :]
    elif value.count(":") > 1:
        return None  # a bare IPv6 address must be bracketed
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def client_key(remote: str | None) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 by its /64 (one host holds a whole /64)."""
    if not remote:
        return "local"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureThrottle:
    """Failed authentications per client: `burst` at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def blocked_for(self, client: str, now: float | None = None) -> float:
        """0 when the client may try to authenticate, else the seconds until it may."""
        if self.rate <= 0 or client not in self._buckets:
            return 0.0
        tokens = self._tokens(client, time.monotonic() if now is None else now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, client: str, now: float | None = None) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        if len(self._buckets) >= MAX_CLIENTS:
            self._prune(now)
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1.0), now)

    def _prune(self, now: float) -> None:
        full = [c for c in self._buckets if self._tokens(c, now) >= self.burst]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= MAX_CLIENTS:  # still full: forget the oldest half
            for client in list(self._buckets)[: MAX_CLIENTS // 2]:
                del self._buckets[client]


class WebGuard:
    """The policy above, for one worker; `middleware` goes into Faust's `web_application_options`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._token = settings.api_token.encode()
        self.check_host = is_loopback(settings.web_host) or bool(settings.web_allowed_hosts.strip())
        allowed = {
            h.strip().lower().rstrip(".")
            for h in settings.web_allowed_hosts.split(",")
            if h.strip()
        }
        own = host_name(settings.web_host) or settings.web_host.strip("[]").lower()
        if own not in ("0.0.0.0", "::", ""):  # noqa: S104 (compares the setting; binds nothing)
            allowed.add(own)
        self.allowed_hosts = frozenset(allowed)
        self.throttle = FailureThrottle(
            settings.web_auth_failure_rate, settings.web_auth_failure_burst
        )

    def host_allowed(self, header: str | None) -> bool:
        if not self.check_host:
            return True
        name = host_name(header or "")
        return name is not None and (is_loopback(name) or name in self.allowed_hosts)

    def bearer(self, headers: Any) -> str:
        """ "ok", or why the Authorization header is refused: missing, malformed or wrong."""
        given = headers.get("Authorization")
        if given is None:
            return "missing"
        try:
            raw = given.encode("ascii")
        except UnicodeEncodeError:
            return "malformed"
        scheme, _, token = raw.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return "malformed"
        if not self._token or not hmac.compare_digest(token.strip(), self._token):
            return "wrong"
        return "ok"

    def failed(self, request: aioweb.Request, reason: str) -> None:
        """Count a failed authentication against the request's client (views call this for signatures)."""
        self.throttle.failed(client_key(request.remote))
        metrics.HTTP_AUTH_FAILURES.labels(_route(request) or "other", reason).inc()

    def refuse(self, request: aioweb.Request, reason: str, message: str) -> aioweb.Response:
        """401, counted; nothing about the credential is echoed or logged."""
        self.failed(request, reason)
        if _route(request) == "/v1/events":
            metrics.HTTP_INGEST_REFUSED.labels("401").inc()
        log.warning(
            "http.auth_refused",
            route=_route(request),
            reason=reason,
            client=client_key(request.remote),
        )
        return aioweb.json_response(
            {"error": message}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @aioweb.middleware
    async def middleware(self, request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        route = _route(request)
        if not self.host_allowed(request.headers.get("Host")):
            metrics.HTTP_AUTH_FAILURES.labels(route or "other", "bad_host").inc()
            return aioweb.json_response(
                {
                    "error": "this worker does not answer for that Host (add it to PW_WEB_ALLOWED_HOSTS)"
                },
                status=421,
            )
        access = ROUTES.get(route) if route is not None else None
        if access is None:
            return aioweb.json_response({"error": "not found"}, status=404)
        if access == OPEN:
            return await handler(request)
        request[CREDENTIAL] = None
        if not self._token and access == TOKEN:
            return await handler(request)  # no token configured: loopback only (exposure_error)
        wait = self.throttle.blocked_for(client_key(request.remote))
        if wait:
            metrics.HTTP_AUTH_FAILURES.labels(route, "throttled").inc()
            if route == "/v1/events":
                metrics.HTTP_INGEST_REFUSED.labels("429").inc()
            retry = str(max(1, math.ceil(wait)))
            return aioweb.json_response(
                {
                    "error": "too many failed authentications from this address",
                    "retry_after": int(retry),
                },
                status=429,
                headers={"Retry-After": retry},
            )
        verdict = self.bearer(request.headers)
        if verdict == "ok":
            request[CREDENTIAL] = "bearer"
            return await handler(request)
        if access == TOKEN_OR_SIGNATURE:
            if not self._token and not self.settings.ingest_hmac_secret:
                return self.refuse(
                    request,
                    "disabled",
                    "HTTP ingest is disabled: set PW_API_TOKEN or PW_INGEST_HMAC_SECRET",
                )
            signed = request.headers.get("webhook-signature") and request.headers.get(
                "webhook-timestamp"
            )
            if verdict == "missing" and signed and self.settings.ingest_hmac_secret:
                return await handler(request)  # the view checks the signature against the body
            if verdict == "missing":
                return self.refuse(request, "missing", "missing bearer token or signature")
        messages = {
            "missing": "missing bearer token",
            "malformed": "malformed Authorization header: send Authorization: Bearer <token>",
            "wrong": "wrong bearer token",
        }
        return self.refuse(request, verdict, messages[verdict])


def _route(request: aioweb.Request) -> str | None:
    """The pattern of the route the request matched (`/v1/alerts/{alert_id}/{action}`), or None."""
    match = request.match_info
    if match.http_exception is not None:
        return None
    resource = match.route.resource
    return resource.canonical if resource is not None else None
