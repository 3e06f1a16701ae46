"""The EventBridge API destination endpoint, served for real on 127.0.0.1 and called over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from partnerwatch.local_worker import free_port
from pipeline.event import normalize
from sources.notifications.eventbridge import EventBridgeEndpoint
from sources.notifications.events import Target
from sources.notifications.seen import Seen
from tests.notifications.harness import own_fixtures

KEY = "pw-test-eventbridge-key-0123456789"


def test_eventbridge_endpoint(tmp_path: Path) -> None:
    stored: list[dict[str, Any]] = []
    broker_up = [True]

    async def emit(events: list[dict[str, Any]]) -> None:
        if not broker_up[0]:
            raise ConnectionError("broker away (test)")
        stored.extend(normalize(orjson.loads(orjson.dumps(e))) for e in events)

    endpoint = EventBridgeEndpoint(
        emit,
        Seen(tmp_path / "seen.sqlite"),
        Target("A0001SELLER", "DE", "eventbridge"),
        "x-partnerwatch-key",
        key=KEY,
    )
    fixtures = dict(own_fixtures())
    wrapped = fixtures["status change inside an EventBridge event"]
    bare = fixtures["MFN quantity, no marketplace named"]

    async def main() -> list[tuple[int, Any]]:
        runner = web.AppRunner(endpoint.app(), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/eventbridge"
        out = []
        try:
            async with aiohttp.ClientSession() as session:

                async def post(body: bytes, key: str | None = KEY) -> tuple[int, Any]:
                    headers = {"content-type": "application/json"}
                    if key is not None:
                        headers["x-partnerwatch-key"] = key
                    async with session.post(url, data=body, headers=headers) as response:
                        return response.status, await response.json(content_type=None)

                out.append(await post(orjson.dumps(wrapped), key=None))
                out.append(await post(orjson.dumps(wrapped), key=KEY[:-1] + "x"))
                out.append(await post(orjson.dumps(wrapped)))
                out.append(await post(orjson.dumps(wrapped)))  # EventBridge retried: a repeat
                broker_up[0] = False
                out.append(await post(orjson.dumps(bare)))
                broker_up[0] = True
                out.append(await post(orjson.dumps(bare)))  # EventBridge's retry after the 503
                out.append(await post(b"{not json"))
                out.append(await post(b"x" * (300 * 1024)))
        finally:
            await runner.cleanup()
        return out

    answers = asyncio.run(main())
    statuses = [status for status, _ in answers]
    assert statuses == [401, 401, 200, 200, 503, 200, 400, 413]
    assert answers[3][1] == {"stored": 0, "duplicate": True}
    assert [e["action"] for e in stored] == [
        "listing.status_change",
        "inventory.quantity_observed",
        "notification.received",
    ]
    assert stored[0]["origin"]["delivery"] == "eventbridge" and stored[0]["origin"][
        "eventbridge_source"
    ].startswith("aws.partner/sellingpartnerapi")
    assert stored[2]["origin"]["reason"] == "not JSON"
