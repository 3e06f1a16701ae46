"""Generic webhook: the alert as JSON, signed so the receiver can trust it and refuse replays.

Headers: `X-PartnerWatch-Timestamp: <unix seconds>` and
`X-PartnerWatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. Signing the
timestamp with the body means an attacker who captured a request cannot re-send it later: the
receiver checks the signature, then that the timestamp is within its tolerance
(`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson

from sinks.alert_outputs.base import Alert, HttpRequest, check_status

TIMESTAMP_HEADER = "X-PartnerWatch-Timestamp"
SIGNATURE_HEADER = "X-PartnerWatch-Signature"
#: Default replay window of `verify_signature`, seconds either side of now.
DEFAULT_TOLERANCE = 300


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex>` over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """The receiver's check: a valid signature over a timestamp no further than `tolerance`
    seconds from now. Constant-time comparison; a malformed timestamp is a refusal."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookOutput:
    """POSTs the alert itself (the pw.alerts record) as JSON."""

    def __init__(self, name: str, url: str, secret: str, headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.headers = dict(headers or {})

    def render(self, alert: Alert, now: float) -> HttpRequest:
        body = orjson.dumps(alert)
        timestamp = str(int(now))
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        return HttpRequest(self.url, body, headers)

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)
