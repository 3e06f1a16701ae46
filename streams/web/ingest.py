"""`POST /v1/events`: events over HTTP, validated, produced to pw.actions, answered per event.

For gateways that cannot speak Kafka. A request carries one event (a JSON object) or a JSON array
of events, and is refused whole, with nothing written, when it is not authenticated (401), not
`application/json` (415), larger than `PW_HTTP_MAX_BODY_BYTES` or `PW_HTTP_MAX_EVENTS` (413) or
over its credential's rate (429 with `Retry-After`). Otherwise every event is validated with
`pipeline.event.parse_action` (the same gate as the ingest agent) and:

- accepted: produced to pw.actions keyed by `account_id`, where the ingest agent sequences (and
  masks) it like any other source message; a repeated `event_id` is stored once, so a client
  may retry a request whose answer it did not get;
- rejected: written to pw.deadletter with its reason, source `POST /v1/events` and its index in
  the request as `offset`.

The answer is sent only after the broker acknowledged every record (acks=all, idempotent
producer); if that fails the answer is 503 and the client retries. Authentication: a bearer token
(`PW_API_TOKEN`) or an HMAC signature (`PW_INGEST_HMAC_SECRET`): header `X-PW-Timestamp` (Unix
seconds) and `X-PW-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`; the timestamp
must be within `PW_INGEST_HMAC_WINDOW` seconds of now and each signature is accepted once. With
neither configured the endpoint refuses everything. Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from faust import web
from mode import Service

from pipeline import deadletter
from pipeline.config import Settings
from pipeline.event import Rejected, parse_action
from sinks import metrics
from sinks.kafka_io import aio_producer
from streams.app import app, settings

log = structlog.get_logger(__name__)

SOURCE = "POST /v1/events"
#: Signatures remembered against replay (each for the replay window); beyond this, refuse.
MAX_REMEMBERED_SIGNATURES = 200_000


class TokenBucket:
    """Per-credential request rate: `rate` per second sustained, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # credential -> (tokens, at)

    def take(self, credential: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(credential, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[credential] = (tokens - 1.0, now)
            return 0.0
        self._buckets[credential] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Authenticator:
    """Bearer token or HMAC signature; answers the credential's name (never the secret) or raises."""

    def __init__(self, s: Settings) -> None:
        self.token = s.api_token
        self.secret = s.ingest_hmac_secret.encode()
        self.window = s.ingest_hmac_window
        self._seen: dict[str, float] = {}  # signature -> when it may be forgotten

    def check_header(self, headers: Any) -> str | None:
        """The credential if a bearer token is given and right; None when a signature must be
        checked against the body. Raises PermissionError when refused."""
        if not self.token and not self.secret:
            raise PermissionError("HTTP ingest is disabled: set PW_API_TOKEN or PW_INGEST_HMAC_SECRET")
        given = headers.get("Authorization", "")
        if given:
            if self.token and hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return "bearer"
            raise PermissionError("wrong bearer token")
        if self.secret and headers.get("X-PW-Signature") and headers.get("X-PW-Timestamp"):
            return None
        raise PermissionError("missing bearer token or signature")

    def check_signature(self, headers: Any, body: bytes, now: float | None = None) -> str:
        now = time.time() if now is None else now
        stamp = headers.get("X-PW-Timestamp", "")
        signature = headers.get("X-PW-Signature", "")
        try:
            ts = int(stamp)
        except ValueError:
            raise PermissionError("X-PW-Timestamp must be Unix seconds") from None
        if abs(now - ts) > self.window:
            raise PermissionError("X-PW-Timestamp is outside the replay window")
        expected = "sha256=" + hmac.new(self.secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(errors="replace"), expected.encode()):
            raise PermissionError("wrong signature")
        self._seen = {k: v for k, v in self._seen.items() if v > now} if len(self._seen) > 1000 else self._seen
        if expected in self._seen and self._seen[expected] > now:
            raise PermissionError("signature already used (replay)")
        if len(self._seen) >= MAX_REMEMBERED_SIGNATURES:
            raise PermissionError("too many signed requests in the replay window")
        self._seen[expected] = now + 2 * self.window
        return "hmac"


class IngestProducer(Service):
    """An idempotent acks=all producer of its own: the answer waits for the broker's ack."""

    producer: AIOKafkaProducer | None = None

    def __init__(self, s: Settings, **kwargs: Any) -> None:
        self.settings = s
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        # The Kafka client's debug log prints every record it sends (raw bank data, before
        # masking): held at info even when PW_LOG_LEVEL=debug.
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.INFO))
        producer = aio_producer(self.settings, role="http-ingest", linger_ms=2, request_timeout_ms=30_000)
        await producer.start()
        self.producer = producer  # only a started producer is visible to requests (503 before)

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


producer_service = IngestProducer(settings)
app.service(producer_service)  # type: ignore[arg-type]  # Faust accepts instances too
authenticator = Authenticator(settings)
limiter = TokenBucket(settings.http_rate, settings.http_burst)


def split_body(body: bytes) -> list[bytes]:
    """The request's events as separate messages: each element of a JSON array, or the whole body
    (an object, or anything else, which then fails validation as one event)."""
    if body.lstrip()[:1] != b"[":
        return [body]
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [body]
    out = []
    for item in items:
        try:
            out.append(orjson.dumps(item))
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: keep it as a bad value
            out.append(b"\x00nested too deeply")
    return out


def judge(message: bytes) -> tuple[dict[str, Any] | None, Rejected | None]:
    try:
        return parse_action(message, settings.max_event_bytes), None
    except Rejected as exc:
        return None, exc


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than `limit` (not read further)."""
    length = request.content_length  # type: ignore[attr-defined]  # aiohttp's Request
    if length is not None and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):  # type: ignore[attr-defined]
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@app.page("/v1/events")
class Events(web.View):
    async def post(self, request: web.Request) -> web.Response:
        try:
            credential = authenticator.check_header(request.headers)
        except PermissionError as exc:
            metrics.HTTP_INGEST_REFUSED.labels("401").inc()
            log.warning("http_ingest.refused", status=401, why=str(exc))
            return self.json({"error": str(exc)}, status=401)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            metrics.HTTP_INGEST_REFUSED.labels("415").inc()
            return self.json({"error": "Content-Type must be application/json"}, status=415)
        body = await _read_limited(request, settings.http_max_body_bytes)
        if body is None:
            metrics.HTTP_INGEST_REFUSED.labels("413").inc()
            return self.json({"error": f"body larger than {settings.http_max_body_bytes} bytes"}, status=413)
        if credential is None:
            try:
                credential = authenticator.check_signature(request.headers, body)
            except PermissionError as exc:
                metrics.HTTP_INGEST_REFUSED.labels("401").inc()
                log.warning("http_ingest.refused", status=401, why=str(exc))
                return self.json({"error": str(exc)}, status=401)
        wait = limiter.take(credential)
        if wait:
            metrics.HTTP_INGEST_REFUSED.labels("429").inc()
            return self.json(
                {"error": "rate limit exceeded", "retry_after": math.ceil(wait)},
                status=429, headers={"Retry-After": str(math.ceil(wait))},
            )
        messages = split_body(body)
        if len(messages) > settings.http_max_events:
            metrics.HTTP_INGEST_REFUSED.labels("413").inc()
            return self.json({"error": f"more than {settings.http_max_events} events"}, status=413)
        return await self._ingest(messages)

    async def _ingest(self, messages: list[bytes]) -> web.Response:
        producer = producer_service.producer
        if producer is None:
            return self.json({"error": "starting, retry"}, status=503)
        results: list[dict[str, Any]] = []
        pending = []
        try:
            for index, message in enumerate(messages):
                event, rejected = judge(message)
                if event is not None:
                    key = event["account_id"].encode()
                    pending.append(await producer.send(settings.actions_topic, message, key=key))
                    results.append({"index": index, "status": "accepted", "event_id": event["event_id"]})
                elif rejected is not None:
                    record = deadletter.record(rejected.reason, rejected.detail, SOURCE, -1, index, message)
                    pending.append(await producer.send(settings.deadletter_topic, record, key=None))
                    results.append(
                        {"index": index, "status": "rejected", "reason": rejected.reason, "detail": rejected.detail}
                    )
            await asyncio.gather(*pending)
        except Exception as exc:  # the broker did not take them all: the client must retry
            log.error("http_ingest.produce_failed", error=type(exc).__name__, events=len(messages))
            return self.json({"error": "not all events reached the broker: retry the request"}, status=503)
        accepted = sum(r["status"] == "accepted" for r in results)
        metrics.HTTP_INGEST_EVENTS.labels("accepted").inc(accepted)
        metrics.HTTP_INGEST_EVENTS.labels("rejected").inc(len(results) - accepted)
        return self.json({"accepted": accepted, "rejected": len(results) - accepted, "results": results})
