"""Helpers of the notification tests: queues, Amazon's example notifications, the project's own."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import orjson

from pipeline.config import REPO_ROOT
from sources.notifications.config import NotifyConfig
from sources.notifications.sqs import client

FIXTURES = Path(__file__).parent / "fixtures"
#: Amazon's notification schemas: ../shared/amazon-models beside the repository (PW_AMAZON_MODELS
#: overrides, e.g. for a git worktree that lives elsewhere). Read at run time, never copied.
SCHEMAS = (
    Path(os.environ.get("PW_AMAZON_MODELS") or REPO_ROOT.parent / "shared" / "amazon-models")
    / "schemas"
    / "notifications"
)
ACCOUNT = "A0001SELLER"


def amazon_examples() -> list[tuple[str, dict[str, Any]]]:
    """(file name, example) of every example in Amazon's notification schemas (empty if absent)."""
    out = []
    if SCHEMAS.is_dir():
        for path in sorted(SCHEMAS.glob("*.json")):
            doc = orjson.loads(path.read_bytes())
            for n, example in enumerate(doc.get("examples") or []):
                out.append((f"{path.stem}#{n}", example))
    return out


def own_fixtures() -> list[tuple[str, Any]]:
    """The project's own notifications (tests/notifications/fixtures/notifications.json)."""
    doc = orjson.loads((FIXTURES / "notifications.json").read_bytes())
    return [(case["name"], case["notification"]) for case in doc["cases"]]


def sqs_client(endpoint: str) -> Any:
    return client(NotifyConfig(sqs_endpoint_url=endpoint, sqs_wait_seconds=1))


def new_queue(sqs: Any, visibility: int = 30) -> str:
    name = f"pw-test-{uuid.uuid4().hex[:12]}"
    return str(
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})[
            "QueueUrl"
        ]
    )


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


class HoldingProxy:
    """An HTTP proxy in front of ElasticMQ that forwards everything but holds deletes.

    A DeleteMessage / DeleteMessageBatch request sets `delete_requested` and gets no answer: the
    process that sent it is caught between "its events are in Kafka" and "the message is gone".
    """

    def __init__(self, upstream: str) -> None:
        import threading

        self.upstream = upstream.rstrip("/")
        self.delete_requested = threading.Event()
        self.url = ""
        self._loop: Any = None
        self._thread: Any = None

    def start(self) -> HoldingProxy:
        import asyncio
        import threading

        import aiohttp
        from aiohttp import web

        from partnerwatch.local_worker import free_port

        port = free_port()
        ready = threading.Event()

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            target = request.headers.get("X-Amz-Target", "") + request.query.get("Action", "")
            if "DeleteMessage" in target or b"Action=DeleteMessage" in body:
                self.delete_requested.set()
                await asyncio.Event().wait()  # never answered
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            }
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    request.method, self.upstream + request.path_qs, data=body, headers=headers
                ) as answer,
            ):
                payload = await answer.read()
                out = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() in ("content-type", "x-amzn-requestid")
                }
                return web.Response(status=answer.status, body=payload, headers=out)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())

        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=run, daemon=True, name="sqs-proxy")
        self._thread.start()
        assert ready.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def wire(notification: Any) -> str:
    """A notification as an SQS message body (JSON text)."""
    return notification if isinstance(notification, str) else orjson.dumps(notification).decode()
