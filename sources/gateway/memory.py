"""What the gateway remembers of earlier calls and answers, for classify.py (its `Memory`)."""

from __future__ import annotations

import time

from sources.gateway.store import Store

FEED_CONTENT_SECONDS = 3600.0


class Memory:
    """What classify.py may ask about earlier calls (store-backed, feed content in memory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.feeds: dict[str, tuple[bytes, float]] = {}

    def report_type(self, ident: str) -> str | None:
        return self.store.report_type(ident)

    def price(self, sku: str, marketplace: str) -> str | None:
        return self.store.price(sku, marketplace)

    def feed_document(self, document_id: str) -> bytes | None:
        found = self.feeds.get(document_id)
        return found[0] if found and found[1] > time.monotonic() else None

    def keep_feed(self, document_id: str, content: bytes) -> None:
        now = time.monotonic()
        for key in [k for k, (_, exp) in self.feeds.items() if exp <= now]:
            del self.feeds[key]
        self.feeds[document_id] = (content, now + FEED_CONTENT_SECONDS)
