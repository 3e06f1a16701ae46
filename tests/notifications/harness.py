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
SCHEMAS = Path(os.environ.get("PW_AMAZON_MODELS") or REPO_ROOT.parent / "shared" / "amazon-models") / "schemas" / "notifications"
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
    return str(sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"])


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
