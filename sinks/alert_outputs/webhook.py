"""Generic webhook: the alert as JSON, signed with Standard Webhooks so the receiver can trust it
and refuse replays.

Headers (pipeline/webhook_signature.py): `webhook-id` (the alert version: `<alert_id>.<count>`,
the same on every retry of that version, so a receiver can drop repeats), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256(key,
"<id>.<timestamp>.<body>")>`. Any Standard Webhooks library verifies it (Python:
`standardwebhooks.Webhook(secret).verify(body, headers)` with a `whsec_` secret, or
`Webhook(secret.encode())` with a plain one), or `verify_signature` below.
"""

from __future__ import annotations

import hashlib

import orjson

from pipeline import webhook_signature
from pipeline.webhook_signature import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from sinks.alert_outputs.base import Alert, HttpRequest, check_status, lifecycle

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookOutput",
    "message_id",
    "signed_headers",
    "verify_signature",
]

#: Default tolerance of `verify_signature`, seconds either side of now.
DEFAULT_TOLERANCE = webhook_signature.DEFAULT_TOLERANCE


def message_id(alert: Alert) -> str:
    """The webhook id of one alert version (and of one lifecycle action on it)."""
    base = f"{alert.get('alert_id', '')}.{alert.get('count', 1)}"
    state = lifecycle(alert)
    if state is not None:
        base += "." + hashlib.sha256(f"{state['status']}|{state['at']}".encode()).hexdigest()[:16]
    return base


def signed_headers(secret: str, alert: Alert, now: float, body: bytes) -> dict[str, str]:
    return webhook_signature.headers(secret, message_id(alert), int(now), body)


def verify_signature(
    secret: str | bytes,
    headers: dict[str, str],
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """The receiver's check: a valid signature over a timestamp no further than `tolerance`
    seconds from now."""
    try:
        webhook_signature.verify(secret, headers, body, tolerance, now)
    except webhook_signature.SignatureError:
        return False
    return True


class WebhookOutput:
    """POSTs the alert itself (the pw.alerts record) as JSON."""

    def __init__(
        self, name: str, url: str, secret: str, headers: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        webhook_signature.secret_key(secret)  # a malformed whsec_ secret stops the feed at start
        self.headers = dict(headers or {})

    def render(self, alert: Alert, now: float) -> HttpRequest:
        body = orjson.dumps(alert)
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            **signed_headers(self.secret, alert, now, body),
        }
        return HttpRequest(self.url, body, headers)

    def accept(self, status: int, body: bytes) -> None:
        check_status(status, body)
