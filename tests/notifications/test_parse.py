"""Notifications into events, without a queue: the project's fixtures and Amazon's own examples.

Every event must pass the ingest validator as it is (`pipeline.event.normalize`), carry the
notification (redacted, within the origin bound), and say what its fixture says it must.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.event import normalize
from pipeline.origin import MAX_ORIGIN_BYTES
from sources.notifications import parse
from sources.notifications.events import Target, to_events, unreadable_event
from tests.notifications.harness import ACCOUNT, SCHEMAS, amazon_examples, own_fixtures

TARGET = Target(ACCOUNT, "DE")


def _valid(event: dict[str, Any]) -> dict[str, Any]:
    stored = normalize(orjson.loads(orjson.dumps(event)))
    assert stored["actor"]["type"] == "amazon"
    assert len(orjson.dumps(stored["origin"])) <= MAX_ORIGIN_BYTES
    return stored


def _fixture_cases() -> list[Any]:
    from tests.notifications.harness import FIXTURES

    doc = orjson.loads((FIXTURES / "notifications.json").read_bytes())
    return [pytest.param(c, id=c["name"]) for c in doc["cases"]]


@pytest.mark.parametrize("case", _fixture_cases())
def test_own_fixture_becomes_the_expected_event(case: dict[str, Any]) -> None:
    notification = parse.parse(case["notification"])
    events = [_valid(e) for e in to_events(notification, TARGET, received_ms=1_772_445_600_000)]
    assert len(events) == 1
    event, expect = events[0], case["expect"]
    for key in ("action", "marketplace", "resource", "changes", "amount", "occurred_at"):
        if key in expect:
            assert event.get(key) == expect[key], (key, event.get(key))
    for key, value in expect.get("origin", {}).items():
        assert event["origin"].get(key) == value, (key, event["origin"])
    for key in expect.get("origin_has", []):
        assert key in event["origin"]
    assert event["origin"]["notification_type"] == notification.type
    assert ("notification" in event["origin"]) != ("notification_excerpt" in event["origin"])
    text = orjson.dumps(event).decode()
    for secret in expect.get("absent", []):
        assert secret not in text, f"{secret} leaked into the event"


@pytest.mark.skipif(
    not SCHEMAS.is_dir(),
    reason=f"Amazon's notification schemas are not at {SCHEMAS} (../shared/amazon-models; PW_AMAZON_MODELS overrides)",
)
@pytest.mark.parametrize("name", [n for n, _ in amazon_examples()] or ["none"])
def test_every_amazon_example_becomes_valid_events(name: str) -> None:
    example = dict(amazon_examples())[name]
    notification = parse.parse(example)
    assert notification.type == str(parse.get(example, "NotificationType")).upper()
    events = [_valid(e) for e in to_events(notification, TARGET)]
    assert events and len({e["event_id"] for e in events}) == len(events)
    for event in events:
        assert event["origin"]["notification_id"] == parse.get(
            parse.get(example, "NotificationMetadata"), "NotificationId"
        )
        kept = event["origin"].get("notification")
        if kept is not None:
            assert parse.get(kept, "NotificationType") == parse.get(example, "NotificationType")


@pytest.mark.skipif(
    not SCHEMAS.is_dir(), reason=f"Amazon's notification schemas are not at {SCHEMAS}"
)
def test_amazon_examples_sharing_an_id_stay_apart_and_repeats_do_not() -> None:
    examples = amazon_examples()
    identities = [parse.parse(e).identity for _, e in examples]
    ids = [parse.get(parse.get(e, "NotificationMetadata"), "NotificationId") for _, e in examples]
    assert len(set(ids)) < len(ids), (
        "Amazon's examples reuse NotificationIds (the reason identity includes content)"
    )
    assert len(set(identities)) == len(identities)
    again = [parse.parse(orjson.loads(orjson.dumps(e))).identity for _, e in examples]
    assert again == identities


def test_the_same_id_with_the_same_content_is_one_identity_whatever_the_casing_around_it() -> None:
    (_, first), *_ = own_fixtures()
    same = orjson.loads(orjson.dumps(first))
    same["NotificationMetadata"]["PublishTime"] = (
        "2026-03-02T11:00:00.000Z"  # published again later
    )
    assert parse.parse(first).identity == parse.parse(same).identity
    changed = orjson.loads(orjson.dumps(first))
    changed["Payload"]["Status"] = ["DISCOVERABLE"]
    assert parse.parse(first).identity != parse.parse(changed).identity


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"Payload": {}}', "no NotificationType"),
        (b'{"NotificationType": "X"}', "no Payload"),
        (
            b'{"Type": "Notification", "TopicArn": "arn", "Message": "{oops"}',
            "SNS message is not JSON",
        ),
        (b'{"a":' * 10 + b"1" + b"}" * 10, "no NotificationType"),
        (b" " * (parse.MAX_BYTES + 1), "more than"),
    ],
)
def test_what_is_not_a_notification_says_why_and_is_kept_as_evidence(
    body: bytes, reason: str
) -> None:
    with pytest.raises(parse.NotANotification, match=reason):
        parse.from_bytes(body)
    event = _valid(unreadable_event(body, reason, TARGET, "m-1"))
    assert event["action"] == "notification.received" and event["origin"]["body_bytes"] == len(body)


def test_deeply_nested_input_is_refused_or_kept_within_bounds() -> None:
    deep: Any = {"NotificationType": "ORDER_CHANGE", "Payload": {}}
    cursor = deep["Payload"]
    for _ in range(200):
        cursor["x"] = {}
        cursor = cursor["x"]
    events = [_valid(e) for e in to_events(parse.parse(deep), TARGET)]
    assert events[0]["action"] == "notification.received"


def test_the_docs_page_has_the_settings_tables() -> None:
    from pipeline.config import REPO_ROOT
    from sources.notifications.config import markdown_table as notify_table
    from sources.polling.config import markdown_table as poll_table

    page = (REPO_ROOT / "docs" / "notifications.md").read_text()
    assert notify_table() in page and poll_table() in page
    assert "437568002678" in page
