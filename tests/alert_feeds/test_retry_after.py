"""`Retry-After` on 429 and 503 is honoured, and bounded by the retry budget: the delivery code
(sinks/alert_delivery/sender.py) against a real HTTP server on 127.0.0.1 that answers as told."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from sinks.alert_delivery.retry import retry_after
from sinks.alert_delivery.sender import Outcome, deliver
from sinks.alert_outputs.routes import RetryPolicy
from sinks.alert_outputs.webhook import WebhookOutput
from tests.alert_feeds.samples import sample_alert

#: the backoff alone would retry after 10-20 ms
FAST = RetryPolicy(max_attempts=5, max_seconds=30, initial_delay=0.02, max_delay=0.02)


class Server:
    """Answers each POST with the next scripted (status, headers); records when each came."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.arrivals: list[float] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals.append(time.monotonic())
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="{}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def run(
    script: list[tuple[int, dict[str, str]]], policy: RetryPolicy = FAST
) -> tuple[Outcome, Server]:
    server = Server(script)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            outcome = await deliver(
                session, WebhookOutput("hook", server.url, "k"), sample_alert(), policy
            )
    finally:
        await server.stop()
    return outcome, server


def gaps(server: Server) -> list[float]:
    return [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_waited(status: int) -> None:
    outcome, server = asyncio.run(run([(status, {"Retry-After": "1"})]))
    assert outcome.delivered and outcome.attempts == 2
    assert gaps(server)[0] >= 1.0  # not the 20 ms backoff: the receiver's second


def test_retry_after_http_date_is_waited() -> None:
    # The date has whole seconds: 3 s past the last whole second is at least 2 s from now, so
    # the first attempt may come up to 1.1 s late (a busy machine) and the wait still shows.
    when = format_datetime(datetime.fromtimestamp(int(time.time()) + 3, UTC), usegmt=True)
    outcome, server = asyncio.run(run([(503, {"Retry-After": when})]))
    assert outcome.delivered and outcome.attempts == 2
    assert gaps(server)[0] >= 0.9  # not the 20 ms backoff: it waited for the date


def test_without_retry_after_the_backoff_applies_and_other_statuses_ignore_it() -> None:
    # 500 with a Retry-After: not a status that asks to wait; 429 without one: backoff
    outcome, server = asyncio.run(run([(500, {"Retry-After": "30"}), (429, {})]))
    assert outcome.delivered and outcome.attempts == 3
    assert max(gaps(server)) < 30  # neither retry waited the 30 s


def test_a_retry_after_past_the_budget_parks_at_once() -> None:
    policy = RetryPolicy(max_attempts=5, max_seconds=5, initial_delay=0.02, max_delay=0.02)
    outcome, server = asyncio.run(run([(429, {"Retry-After": "3600"})], policy))
    assert not outcome.delivered and outcome.attempts == 1 and len(server.arrivals) == 1
    assert (
        "429" in outcome.error and "Retry-After 3600" in outcome.error and "budget" in outcome.error
    )


def test_retry_after_parsing() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 0 ") == 0.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("-5") is None
    assert retry_after("1e9") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == pytest.approx(
        60.0
    )
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    assert retry_after("99999999999999999999") == 1e9
