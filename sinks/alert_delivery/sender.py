"""One alert to one output: POST, judge the answer, retry with backoff until delivered or the
budget (attempts or seconds) is spent.

The request is rendered again for every attempt, so signatures carry a fresh timestamp and a
receiver's replay window never refuses a late retry. A 429 or 503 with `Retry-After` is retried
after the time the receiver asked for instead of the backoff (chat APIs and SIEM collectors rate
limit this way), bounded by the budget: when the wait would go past `max_seconds` the alert is
parked at once (with the receiver's answer in the error), never held longer than the budget.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import structlog

from sinks import metrics
from sinks.alert_delivery.retry import RETRY_AFTER_STATUSES, backoff, retry_after
from sinks.alert_outputs.base import Alert, DeliveryError, Output
from sinks.alert_outputs.routes import RetryPolicy

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    output: str
    delivered: bool
    attempts: int
    error: str = ""
    seconds: float = 0.0


async def attempt(
    session: aiohttp.ClientSession, output: Output, alert: Alert, timeout: float
) -> None:
    """One POST; raises DeliveryError on any failure."""
    request = output.render(alert, time.time())
    try:
        async with session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            status = response.status
            wait = (
                retry_after(response.headers.get("Retry-After"))
                if status in RETRY_AFTER_STATUSES
                else None
            )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}".strip()) from None
    try:
        output.accept(status, body)
    except DeliveryError as exc:
        if wait is not None and exc.retry_after is None:
            exc.retry_after = wait
        raise


async def deliver(
    session: aiohttp.ClientSession, output: Output, alert: Alert, policy: RetryPolicy
) -> Outcome:
    """Deliver with retries; never raises for a receiver's failure (the outcome says parked)."""
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            await attempt(session, output, alert, policy.timeout)
        except DeliveryError as exc:
            elapsed = time.monotonic() - started
            delay = backoff(attempts, policy.initial_delay, policy.max_delay)
            if exc.retry_after is not None:
                delay = exc.retry_after  # the receiver's own word; the budget below bounds it
            spent = attempts >= policy.max_attempts or elapsed + delay > policy.max_seconds
            if not exc.retryable or spent:
                error = str(exc)
                if (
                    exc.retryable
                    and exc.retry_after is not None
                    and elapsed + delay > policy.max_seconds
                ):
                    error += f" (Retry-After {exc.retry_after:g} s is past the retry budget of {policy.max_seconds:g} s)"
                metrics.ALERT_DELIVERIES.labels(output.name, "parked").inc()
                log.warning(
                    "alert_feed.parked",
                    output=output.name,
                    alert_id=alert.get("alert_id"),
                    attempts=attempts,
                    error=error,
                )
                return Outcome(output.name, False, attempts, error, elapsed)
            metrics.ALERT_DELIVERIES.labels(output.name, "retried").inc()
            log.info(
                "alert_feed.retry",
                output=output.name,
                alert_id=alert.get("alert_id"),
                attempt=attempts,
                retry_in=round(delay, 2),
                error=str(exc),
            )
            await asyncio.sleep(delay)
            continue
        seconds = time.monotonic() - started
        metrics.ALERT_DELIVERIES.labels(output.name, "delivered").inc()
        metrics.ALERT_DELIVERY_SECONDS.labels(output.name).observe(seconds)
        return Outcome(output.name, True, attempts, "", seconds)
