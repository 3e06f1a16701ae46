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
(`PW_API_TOKEN`, checked with every other route's by streams/web/guard.py) or a Standard Webhooks
signature (pipeline/webhook_signature.py) made with `PW_INGEST_HMAC_SECRET`: headers `webhook-id`
(the sender's message id), `webhook-timestamp` (Unix seconds) and `webhook-signature:
v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, as any Standard Webhooks library sends
them; the timestamp must be within `PW_INGEST_HMAC_WINDOW` seconds of now and each signature is
accepted once, by every worker and across restarts (streams/web/signatures.py): a retried signed
request must be signed again, with a new timestamp (its id may stay; events are deduplicated by
`event_id` anyway). With neither configured the endpoint refuses everything. Credentials are never
logged. A JSON array is split into its elements by sources/http_batch.py: one bad element is one
rejected event, and its dead letter keeps the element's bytes (up to `deadletter.MAX_RAW`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from faust import web
from mode import Service

from pipeline import deadletter, webhook_signature
from pipeline.config import Settings
from pipeline.event import Rejected, parse_action
from sinks import metrics
from sinks.kafka_io import aio_producer
from sources.http_batch import split_batch
from streams.app import app, settings, web_guard
from streams.web.guard import CREDENTIAL
from streams.web.signatures import LedgerUnavailable, SignatureLedger

log = structlog.get_logger(__name__)

SOURCE = "POST /v1/events"


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


class BadSignature(Exception):
    """The signature is refused; `reason` is the failed-auth metric's label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_signature(
    secret: str, window: int, headers: Any, body: bytes, now: float | None = None
) -> tuple[str, int]:
    """(the signature, as computed here, and the timestamp) when the request is signed right and
    on time; raises BadSignature. The replay ledger then claims that signature."""
    try:
        verified = webhook_signature.verify(secret, headers, body, window, now)
    except webhook_signature.SignatureError as exc:
        raise BadSignature(exc.reason, str(exc)) from None
    except ValueError as exc:  # PW_INGEST_HMAC_SECRET is a whsec_ secret that is not base64
        log.error("http_ingest.bad_secret", error=str(exc))
        raise BadSignature("bad_signature", "the server's signing secret is unusable") from None
    return verified.signature, verified.timestamp


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
            logging.getLogger(name).setLevel(
                max(logging.getLogger(name).getEffectiveLevel(), logging.INFO)
            )
        producer = aio_producer(
            self.settings, role="http-ingest", linger_ms=2, request_timeout_ms=30_000
        )
        await producer.start()
        self.producer = producer  # only a started producer is visible to requests (503 before)

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


producer_service = IngestProducer(settings)
app.service(producer_service)  # type: ignore[arg-type]  # Faust accepts instances too
signature_ledger = SignatureLedger(settings, producer_service)
app.service(signature_ledger)  # type: ignore[arg-type]
limiter = TokenBucket(settings.http_rate, settings.http_burst)


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
        # The bearer token (or its absence) was checked by streams/web/guard.py; a request it
        # passed without one carries a signature, checked here against the body.
        credential = request.get(CREDENTIAL)  # type: ignore[attr-defined]  # aiohttp's Request
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            metrics.HTTP_INGEST_REFUSED.labels("415").inc()
            return self.json({"error": "Content-Type must be application/json"}, status=415)
        body = await _read_limited(request, settings.http_max_body_bytes)
        if body is None:
            metrics.HTTP_INGEST_REFUSED.labels("413").inc()
            return self.json(
                {"error": f"body larger than {settings.http_max_body_bytes} bytes"}, status=413
            )
        if credential is None:
            try:
                signature, ts = check_signature(
                    settings.ingest_hmac_secret, settings.ingest_hmac_window, request.headers, body
                )
                if not await signature_ledger.claim(signature, ts):
                    raise BadSignature("replay", "signature already used (replay)")
            except BadSignature as exc:
                return web_guard.refuse(request, exc.reason, str(exc))  # type: ignore[arg-type,return-value]  # aiohttp under Faust
            except LedgerUnavailable as exc:
                return self.json({"error": f"{exc}: retry (signed again)"}, status=503)
            credential = "hmac"
        wait = limiter.take(credential)
        if wait:
            metrics.HTTP_INGEST_REFUSED.labels("429").inc()
            return self.json(
                {"error": "rate limit exceeded", "retry_after": math.ceil(wait)},
                status=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
        messages = split_batch(body)
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
                    results.append(
                        {"index": index, "status": "accepted", "event_id": event["event_id"]}
                    )
                elif rejected is not None:
                    record = deadletter.record(
                        rejected.reason, rejected.detail, SOURCE, -1, index, message
                    )
                    pending.append(await producer.send(settings.deadletter_topic, record, key=None))
                    results.append(
                        {
                            "index": index,
                            "status": "rejected",
                            "reason": rejected.reason,
                            "detail": rejected.detail,
                        }
                    )
            await asyncio.gather(*pending)
        except Exception as exc:  # the broker did not take them all: the client must retry
            log.error("http_ingest.produce_failed", error=type(exc).__name__, events=len(messages))
            return self.json(
                {"error": "not all events reached the broker: retry the request"}, status=503
            )
        accepted = sum(r["status"] == "accepted" for r in results)
        metrics.HTTP_INGEST_EVENTS.labels("accepted").inc(accepted)
        metrics.HTTP_INGEST_EVENTS.labels("rejected").inc(len(results) - accepted)
        return self.json(
            {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        )
