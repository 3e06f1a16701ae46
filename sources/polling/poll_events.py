"""The poller's event: one seller account's observation, with an id stable across repeated polls.

`AccountPoll` holds what every poll of an account shares (the API, the snapshot store, the emit
callback) and builds the events; `sources.polling.poller.Poller` and the funds polls build on it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.event import Rejected, format_ms, timestamp
from sources.polling.client import SpApi
from sources.polling.config import PollConfig
from sources.polling.store import Snapshots

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
ADAPTER = "sp-api-poller"
ACTOR = {"type": "amazon", "principal_id": "sp-api-poller"}
MAX_PAGES = 500


@dataclass
class Account:
    account_id: str
    seller_id: str
    sites: list[str]


class AccountPoll:
    def __init__(
        self, account: Account, api: SpApi, store: Snapshots, emit: Emit, config: PollConfig
    ) -> None:
        self.account = account
        self.api = api
        self.store = store
        self.emit = emit
        self.config = config
        self.counts: dict[str, int] = {}

    # -- events --------------------------------------------------------------------------------

    def _event(
        self,
        action: str,
        site: str | None,
        when: str | None,
        now_ms: int,
        operation: str,
        resource: dict[str, str],
        changes: list[dict[str, Any]] | None = None,
        **origin: Any,
    ) -> dict[str, Any]:
        occurred = format_ms(now_ms)
        if when:
            with contextlib.suppress(Rejected):
                occurred = timestamp(when, "lastUpdatedDate")
        basis = orjson.dumps(
            [self.account.account_id, action, site, resource, changes, origin.get("basis")],
            option=orjson.OPT_SORT_KEYS,
        )
        origin.pop("basis", None)
        event: dict[str, Any] = {
            "event_id": f"amzn-p-{hashlib.sha256(basis).hexdigest()[:40]}",
            "occurred_at": occurred,
            "account_id": self.account.account_id,
            "actor": dict(ACTOR),
            "action": action,
            "operation": operation,
            "resource": {k: v[:1024] for k, v in resource.items() if v},
            "origin": {
                "adapter": ADAPTER,
                "polled_at": format_ms(now_ms),
                **{k: v for k, v in origin.items() if v is not None},
            },
        }
        if site:
            event["marketplace"] = site
        if changes:
            event["changes"] = changes
        return event
