"""A notification in PartnerWatch's vocabulary: one event (rarely several), actor type `amazon`.

| notification type | action | what the event keeps |
|---|---|---|
| LISTINGS_ITEM_STATUS_CHANGE | `listing.status_change` | SKU, site, `status` (e.g. `BUYABLE,DISCOVERABLE`), ASIN, created date |
| LISTINGS_ITEM_ISSUES_CHANGE | `listing.issues_change` | SKU, site, `severities`, `enforcement_actions` |
| LISTINGS_ITEM_MFN_QUANTITY_CHANGE | `inventory.quantity_observed` | SKU, `quantity` (no site: the account's default, `origin.marketplace_named` false) |
| ANY_OFFER_CHANGED | `listing.price_observed` per offer of the seller itself | ASIN, site, `price` (listing price), currency; no own offer: `notification.received` |
| PRICING_HEALTH | `listing.price_observed` | ASIN, site, `price` of the seller's offer, the issue type |
| ACCOUNT_STATUS_CHANGED | `account.status_change` | `account_status` old and new |
| TRANSACTION_UPDATE | `funds.transaction_posted` | amount, transaction type, related ids |
| REPORT_PROCESSING_FINISHED | `report.processing_finished` | report type, `origin.report_id`, status |
| FEED_PROCESSING_FINISHED | `feed.processing_finished` | feed type, `origin.feed_id`, status |
| anything else | `notification.received` | the type, a site if it names one |

Payload versions: each type's known versions are listed (`KNOWN_VERSIONS`); a notification in
another version is still read field by field and its event says `origin.payload_version_known:
false`. Every event carries the notification itself in `origin.notification` (personal and bank
data removed by key name and by content, then cut to fit `pipeline.origin.MAX_ORIGIN_BYTES`,
with the SHA-256 of what arrived), its type, id and times. The event id is derived from the
notification's identity, so a repeated delivery is the same event, stored once by the ledger.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.event import Rejected, format_ms, timestamp
from pipeline.masking import SENSITIVE_FIELD
from pipeline.origin import MAX_ORIGIN_BYTES
from pipeline.sensitive import find_sensitive
from sources.notifications.parse import Notification, find, text
from sources.notifications.payloads import READERS, read_other

ADAPTER = "sp-api-notifications"
ACTOR = {"type": "amazon", "principal_id": "sp-api-notifications"}

KNOWN_VERSIONS: dict[str, frozenset[str]] = {
    "LISTINGS_ITEM_STATUS_CHANGE": frozenset({"1.0"}),
    "LISTINGS_ITEM_ISSUES_CHANGE": frozenset({"1.0", "2023-12-13"}),
    "LISTINGS_ITEM_MFN_QUANTITY_CHANGE": frozenset({"1.0"}),
    "ANY_OFFER_CHANGED": frozenset({"1.0"}),
    "PRICING_HEALTH": frozenset({"1.0"}),
    "ACCOUNT_STATUS_CHANGED": frozenset({"1.0"}),
    "TRANSACTION_UPDATE": frozenset({"1.0"}),
    "REPORT_PROCESSING_FINISHED": frozenset({"2020-09-04"}),
    "FEED_PROCESSING_FINISHED": frozenset({"2020-09-04"}),
}
#: Keys whose values are personal data in notifications, besides pipeline.masking's field names.
_PERSONAL_KEY = re.compile(
    r"buyer|recipient|tracking|city|region|county|district|stateorregion|geo", re.IGNORECASE
)
#: Room kept in `origin` for the fields around the notification.
_ORIGIN_MARGIN = 256


@dataclass(frozen=True)
class Target:
    """Where a notification's events go: the seller account and the fallback site."""

    account_id: str
    #: Site for actions that need one when the notification names none (e.g. MFN quantity).
    default_marketplace: str | None = None
    #: `sqs` or `eventbridge`.
    delivery: str = "sqs"
    #: Seller ids (merchant tokens) of other accounts, -> that account's id.
    accounts: tuple[tuple[str, str], ...] = ()

    def account_for(self, seller_id: str | None) -> str:
        for seller, account in self.accounts:
            if seller_id == seller:
                return account
        return self.account_id


def to_events(
    notification: Notification,
    target: Target,
    received_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The events of one notification (at least one)."""
    received_ms = received_ms if received_ms is not None else time.time_ns() // 1_000_000
    reader = READERS.get(notification.type, read_other)
    parts = reader(notification)
    if not parts:
        parts = read_other(notification)
    seller = text(find(notification.payload, "SellerId", "SellingPartnerId", "MerchantId"), 64)
    account = target.account_for(seller)
    occurred, time_from = _occurred(notification, received_ms)
    origin = _origin(notification, target, extra or {}, time_from)
    base_id = f"amzn-n-{notification.identity[:40]}"
    events = []
    for index, part in enumerate(parts):
        event: dict[str, Any] = {
            "event_id": base_id if len(parts) == 1 else f"{base_id}.{index + 1}",
            "occurred_at": occurred,
            "account_id": account,
            "actor": dict(ACTOR),
            "action": part["action"],
            "operation": notification.type[:128],
        }
        site = part.get("site")
        part_origin = dict(part.get("origin", {}))
        if site is None and part["action"].startswith(("listing.", "inventory.", "funds.")):
            if target.default_marketplace is None:
                # nowhere to put it: keep it as evidence without the claim about a site
                event["action"] = "notification.received"
                part_origin["interpreted_as"] = part["action"]
            else:
                site = target.default_marketplace
                part_origin["marketplace_named"] = False
        if site is not None:
            event["marketplace"] = site
        if part.get("resource"):
            event["resource"] = {k: v[:1024] for k, v in part["resource"].items() if v}
        if part.get("changes"):
            event["changes"] = part["changes"]
        if part.get("amount"):
            event["amount"] = part["amount"]
        event["origin"] = _fit({**part_origin, **origin}, notification)
        events.append(event)
    return events


def unreadable_event(
    body: bytes, reason: str, target: Target, message_id: str, received_ms: int | None = None
) -> dict[str, Any]:
    """What a message that is not a notification becomes: evidence that it arrived, not dropped."""
    import hashlib

    received_ms = received_ms if received_ms is not None else time.time_ns() // 1_000_000
    digest = hashlib.sha256(body).hexdigest()
    excerpt = body[:1024].decode("utf-8", errors="replace")
    return {
        "event_id": f"amzn-u-{hashlib.sha256(message_id.encode() + b'|' + body).hexdigest()[:40]}",
        "occurred_at": format_ms(received_ms),
        "account_id": target.account_id,
        "actor": dict(ACTOR),
        "action": "notification.received",
        "operation": "unreadable",
        "resource": {"type": "notification", "id": "unreadable"},
        "origin": {
            "adapter": ADAPTER,
            "delivery": target.delivery,
            "reason": reason[:200],
            "message_id": message_id[:128],
            "body_sha256": digest,
            "body_bytes": len(body),
            "body_excerpt": _redact(excerpt),
        },
    }


# -- envelope ------------------------------------------------------------------------------------


def _occurred(n: Notification, received_ms: int) -> tuple[str, str]:
    for name, value in (("event_time", n.event_time), ("publish_time", n.publish_time)):
        if value:
            try:
                return timestamp(value, name), name
            except Rejected:
                continue
    return format_ms(received_ms), "received"


def _origin(
    n: Notification, target: Target, extra: dict[str, Any], time_from: str
) -> dict[str, Any]:
    origin: dict[str, Any] = {
        "adapter": ADAPTER,
        "delivery": target.delivery,
        "notification_type": n.type,
    }
    for key, value in (
        ("notification_id", n.notification_id),
        ("event_time", n.event_time),
        ("publish_time", n.publish_time),
        ("payload_version", n.payload_version),
        ("subscription_id", n.subscription_id),
        ("application_id", n.application_id),
    ):
        if value:
            origin[key] = value
    known = KNOWN_VERSIONS.get(n.type)
    if known is not None:
        origin["payload_version_known"] = n.payload_version in known
    if time_from != "event_time":
        origin["occurred_at_from"] = time_from
    if n.wrappers:
        origin["wrappers"] = ",".join(n.wrappers)
    origin.update({k: v for k, v in n.wrapper_info.items() if k != "eventbridge_detailtype"})
    origin.update(extra)
    return origin


def _fit(origin: dict[str, Any], n: Notification) -> dict[str, Any]:
    """`origin` with the notification (redacted) inside, whole if it fits, else an excerpt."""
    import hashlib

    original = orjson.dumps(n.raw)
    origin["notification_sha256"] = hashlib.sha256(original).hexdigest()
    kept = _redact(n.raw)
    room = MAX_ORIGIN_BYTES - len(orjson.dumps(origin)) - _ORIGIN_MARGIN
    doc = orjson.dumps(kept)
    if len(doc) <= room:
        origin["notification"] = kept
    else:
        origin["notification_bytes"] = len(original)
        excerpt = doc.decode()[: max(0, room - 64)]
        # cut by characters; a multi-byte character may still overflow: shrink until it fits
        while (
            excerpt
            and len(orjson.dumps({**origin, "notification_excerpt": excerpt}))
            > MAX_ORIGIN_BYTES - 16
        ):
            excerpt = excerpt[: int(len(excerpt) * 0.9)]
        origin["notification_excerpt"] = excerpt
    return origin


def _redact(value: Any, depth: int = 0) -> Any:
    """Personal and bank data out: values of sensitive keys, and IBAN or e-mail-like strings."""
    if depth > 32:
        return "[too deep]"
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = str(key)
            if (
                (SENSITIVE_FIELD.search(name) or _PERSONAL_KEY.search(name))
                and item is not None
                and not isinstance(item, bool)
            ):
                out[name] = "[redacted]"
            else:
                out[name] = _redact(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, str) and find_sensitive(value, free_text=True) is not None:
        return "[redacted]"
    return value
