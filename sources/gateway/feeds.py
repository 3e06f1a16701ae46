"""`createFeed`, in PartnerWatch's vocabulary: a `JSON_LISTINGS_FEED` uploaded through the gateway
becomes one listings event per message (PATCH, UPDATE, PARTIAL_UPDATE, DELETE), as the listings
calls would; other feed types are `data.write`. See sources/gateway/classify.py.
"""

from __future__ import annotations

import gzip
from typing import Any

import orjson

from pipeline.marketplaces import site_code
from sources.gateway.calls import Call, Memory, Planned, site_codes
from sources.gateway.listing_changes import listing_change, patch_edits, put_edits

MAX_FEED_MESSAGES = 10_000


def plan_feed(call: Call, params: dict[str, str], memory: Memory) -> list[Planned]:
    body = call.body if isinstance(call.body, dict) else {}
    feed_type = str(body.get("feedType", ""))[:128]
    found = body.get("marketplaceIds")
    ids = found if isinstance(found, list) else []
    sites = site_codes([str(i) for i in ids])
    document_id = str(body.get("inputFeedDocumentId", ""))[:256]
    origin = {"feed_type": feed_type, "feed_document_id": document_id}
    if feed_type != "JSON_LISTINGS_FEED":
        return [
            Planned(
                "data.write", "", sites, {"type": "feed", "id": feed_type or "?"}, origin=origin
            )
        ]
    content = memory.feed_document(document_id)
    messages = _feed_messages(content) if content is not None else None
    if messages is None:
        why = "not uploaded through the gateway" if content is None else "not a JSON listings feed"
        unseen = Planned("listing.update", "", sites, {"type": "feed", "id": document_id or "?"})
        unseen.origin = {**origin, "content": why}
        return [unseen]
    site = sites[0] if sites else None
    out = []
    for index, message in enumerate(messages[:MAX_FEED_MESSAGES]):
        sku = str(message.get("sku", ""))[:1024] or "?"
        operation = str(message.get("operationType", "")).upper()
        message_site = _message_site(message) or site
        if operation == "DELETE":
            planned = listing_change("delete", sku, message_site, [], memory)
        elif operation == "PATCH":
            planned = listing_change(
                "patch", sku, message_site, patch_edits(message.get("patches")), memory
            )
        else:  # UPDATE, PARTIAL_UPDATE
            planned = listing_change(
                "put", sku, message_site, put_edits(message.get("attributes")), memory
            )
        message_id = message.get("messageId", index + 1)
        planned.marketplaces = [message_site] if message_site else sites
        planned.origin = {
            **origin,
            "message_id": message_id if isinstance(message_id, int) else str(message_id)[:64],
            "operation_type": operation[:32],
        }
        planned.suffix = f".m{index + 1}"
        out.append(planned)
    if len(messages) > MAX_FEED_MESSAGES:
        out[-1].origin["messages_not_expanded"] = len(messages) - MAX_FEED_MESSAGES
    return out


def _message_site(message: dict[str, Any]) -> str | None:
    for source in (
        message.get("attributes"),
        *(p.get("value") for p in message.get("patches") or () if isinstance(p, dict)),
    ):
        values = source.get("purchasable_offer") if isinstance(source, dict) else source
        if isinstance(values, list):
            for value in values:
                if isinstance(value, dict) and site_code(value.get("marketplace_id")):
                    return site_code(value.get("marketplace_id"))
    return None


def _feed_messages(content: bytes) -> list[dict[str, Any]] | None:
    if content[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError):
            return None
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list):
        return None
    return [m for m in messages if isinstance(m, dict)]
