"""What every alert output is: render an alert into one HTTP request, and judge the answer.

Outputs are pure: they build bytes and headers, the delivery worker sends them. So a renderer
is tested without a network, and retries, ordering and parking live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

Alert = dict[str, Any]

#: Lifecycle statuses an alert may carry in `alert["lifecycle"]["status"]` when the alert feed
#: sends it after `alerts ack|resolve|reopen` (sinks/alert_delivery/lifecycle.py).
LIFECYCLE_STATUSES = ("acknowledged", "resolved", "reopened")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST to a receiver."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


class DeliveryError(Exception):
    """A receiver refused or failed a delivery; `retryable` False parks the alert at once.
    `retry_after`: the seconds the receiver asked to wait (its `Retry-After` on 429 or 503)."""

    def __init__(
        self, message: str, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Output(Protocol):
    """A named destination: `render` builds the request, `accept` checks the receiver's answer."""

    name: str

    def render(self, alert: Alert, now: float) -> HttpRequest: ...

    def accept(self, status: int, body: bytes) -> None: ...


def lifecycle(alert: Alert) -> dict[str, str] | None:
    """The alert's lifecycle action (`status`, `actor`, `note`, `at`), or None while it is open
    as the detectors made it. Only outputs with `follows_lifecycle = True` are sent one."""
    value = alert.get("lifecycle")
    if isinstance(value, dict) and value.get("status") in LIFECYCLE_STATUSES:
        return {k: str(v) for k, v in value.items()}
    return None


def json_request(url: str, payload: Any, headers: dict[str, str] | None = None) -> HttpRequest:
    return HttpRequest(
        url, orjson.dumps(payload), {"Content-Type": "application/json", **(headers or {})}
    )


def check_status(status: int, body: bytes) -> None:
    """2xx passes. 408, 425, 429 and 5xx are worth retrying; other 4xx will not fix themselves."""
    if 200 <= status < 300:
        return
    text = body[:200].decode("utf-8", "replace")
    retryable = status in (408, 425, 429) or status >= 500
    raise DeliveryError(f"HTTP {status}: {text}", retryable=retryable)


def check_chat_answer(status: int, body: bytes, code_field: str, message_field: str) -> None:
    """Chat bots answer HTTP 200 with an error code in the body (DingTalk and WeCom `errcode`,
    Feishu `code`); a non-zero code is a failed delivery (bad signature, rate limit, ...)."""
    check_status(status, body)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # a receiver (or test double) that answers without a JSON body accepted it
    if isinstance(answer, dict) and answer.get(code_field, 0) not in (0, None):
        raise DeliveryError(
            f"{code_field}={answer.get(code_field)}: {answer.get(message_field, '')}"
        )
