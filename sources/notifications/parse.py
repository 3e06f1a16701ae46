"""Defensive parsing of SP-API notifications: whatever arrives, a `Notification` or `NotANotification`.

Amazon's notifications share an envelope (`NotificationVersion, NotificationType, PayloadVersion,
EventTime, Payload, NotificationMetadata{ApplicationId, SubscriptionId, PublishTime,
NotificationId}`) but not its casing: PRICING_HEALTH, REPORT_/FEED_PROCESSING_FINISHED,
ACCOUNT_STATUS_CHANGED and the newer types write `notificationType`, `payload`. Some payloads are
flat, others wrapped in `Payload.<Type>Notification`. So every field is looked up by its name
folded to lower case without `_` and `-`, and a payload holding one `...Notification` object is
unwrapped.

What else may carry a notification, and is unwrapped first:
- an EventBridge event (`{"detail-type", "source", "detail": <notification>}`): an API
  destination's request body, or an EventBridge rule that targets an SQS queue;
- an SNS envelope (`{"Type": "Notification", "Message": "<notification as text>"}`), when the
  queue is subscribed to an SNS topic.

Nothing here trusts the input: sizes, nesting and types are checked, and what cannot be a
notification raises `NotANotification` with a short reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Largest notification accepted (SQS and EventBridge both stop at 256 KiB).
MAX_BYTES = 256 * 1024
#: Nesting depth of the envelopes unwrapped (EventBridge in SNS in ...).
MAX_WRAPS = 3


class NotANotification(ValueError):
    """The input is not an SP-API notification; the message says why."""


def fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def get(obj: Any, *names: str) -> Any:
    """The value of the first of `names` in `obj`, matched case-insensitively (None if absent)."""
    if not isinstance(obj, dict):
        return None
    wanted = [fold(n) for n in names]
    folded = {fold(k): v for k, v in obj.items() if isinstance(k, str)}
    for name in wanted:
        if name in folded:
            return folded[name]
    return None


def text(value: Any, limit: int = 256) -> str | None:
    """A short string of a scalar (None for objects, lists, empty strings)."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    out = str(value).strip()
    return out[:limit] if out else None


@dataclass(frozen=True)
class Notification:
    """One notification, its envelope read; `payload` unwrapped; `raw` as it arrived."""

    type: str
    notification_id: str
    event_time: str | None
    publish_time: str | None
    payload_version: str | None
    notification_version: str | None
    application_id: str | None
    subscription_id: str | None
    payload: Any
    raw: dict[str, Any]
    #: The envelopes it came in, outermost first (`eventbridge`, `sns`).
    wrappers: tuple[str, ...] = ()
    #: What the wrappers said about it (EventBridge `source`, `id`, `detail-type`, `account`).
    wrapper_info: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Duplicates share it: the NotificationId with the type, event time and payload.

        Amazon's own schema examples reuse one NotificationId across different notifications;
        a repeated delivery is the same notification again. So the same id with different
        content is kept (both), the same id with the same content is a duplicate.
        """
        body = orjson.dumps(self.payload, option=orjson.OPT_SORT_KEYS)
        basis = (
            "\n".join((self.notification_id, self.type, self.event_time or "")).encode()
            + b"\n"
            + body
        )
        if not self.notification_id:
            basis = b"no-id\n" + orjson.dumps(self.raw, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(basis).hexdigest()


def from_bytes(body: bytes | str) -> Notification:
    """Parse a message body (UTF-8 JSON text)."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BYTES:
        raise NotANotification(f"{len(raw)} bytes, more than {MAX_BYTES}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotANotification("not JSON") from None
    return parse(doc)


def parse(
    doc: Any, wrappers: tuple[str, ...] = (), info: dict[str, str] | None = None
) -> Notification:
    """Read a decoded document: a notification, or an EventBridge or SNS envelope around one."""
    info = dict(info or {})
    if not isinstance(doc, dict):
        raise NotANotification("not a JSON object")
    if len(wrappers) < MAX_WRAPS:
        detail = get(doc, "detail")
        if isinstance(detail, dict) and (
            get(doc, "detail-type") is not None or get(doc, "source") is not None
        ):
            for key in ("source", "id", "detail-type", "account", "time"):
                value = text(get(doc, key))
                if value is not None:
                    info[f"eventbridge_{fold(key)}"] = value
            return parse(detail, (*wrappers, "eventbridge"), info)
        message = get(doc, "Message")
        if (
            isinstance(message, str)
            and get(doc, "Type") == "Notification"
            and get(doc, "TopicArn") is not None
        ):
            try:
                inner = orjson.loads(message)
            except orjson.JSONDecodeError:
                raise NotANotification("SNS message is not JSON") from None
            value = text(get(doc, "MessageId"))
            if value is not None:
                info["sns_message_id"] = value
            return parse(inner, (*wrappers, "sns"), info)
    kind = text(get(doc, "NotificationType"), 128)
    payload = get(doc, "Payload")
    if kind is None:
        raise NotANotification("no NotificationType")
    if payload is None:
        raise NotANotification(f"{kind}: no Payload")
    metadata = get(doc, "NotificationMetadata")
    return Notification(
        type=kind.upper(),
        notification_id=text(get(metadata, "NotificationId"), 128) or "",
        event_time=text(get(doc, "EventTime"), 64),
        publish_time=text(get(metadata, "PublishTime"), 64),
        payload_version=text(get(doc, "PayloadVersion"), 32),
        notification_version=text(get(doc, "NotificationVersion"), 32),
        application_id=text(get(metadata, "ApplicationId"), 128),
        subscription_id=text(get(metadata, "SubscriptionId"), 128),
        payload=unwrap(payload),
        raw=doc,
        wrappers=wrappers,
        wrapper_info=info,
    )


def unwrap(payload: Any) -> Any:
    """`Payload.<Type>Notification` -> its object; a flat payload as it is."""
    if not isinstance(payload, dict):
        return payload
    wrapped = [
        v
        for k, v in payload.items()
        if isinstance(k, str) and fold(k).endswith("notification") and isinstance(v, dict)
    ]
    if len(wrapped) == 1:
        inner = dict(wrapped[0])
        # siblings of the wrapper (rare) are kept unless the wrapped object has the same field
        for key, value in payload.items():
            if (
                isinstance(key, str)
                and not fold(key).endswith("notification")
                and get(inner, key) is None
            ):
                inner[key] = value
        return inner
    return payload


def find(obj: Any, *names: str, depth: int = 4) -> Any:
    """The first value named one of `names` anywhere in `obj` (breadth-first, bounded depth)."""
    level = [obj]
    for _ in range(depth):
        following: list[Any] = []
        for item in level:
            found = get(item, *names)
            if found is not None:
                return found
            if isinstance(item, dict):
                following.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                following.extend(v for v in item[:50] if isinstance(v, (dict, list)))
        level = following
        if not level:
            break
    return None
