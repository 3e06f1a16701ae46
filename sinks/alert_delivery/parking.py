"""Parked alerts: what could not be delivered within the retry budget, with why.

A parked record (key = account id, on `<prefix>alerts.parked`) holds the alert, the output it
was for, the last error, the attempts spent and where it came from; `partnerwatch alerts
redeliver` sends it again to that output only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from sinks.alert_delivery.sender import Outcome
from sinks.alert_outputs.base import Alert


def parked_record(
    alert: Alert, outcome: Outcome, source: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parked record of a failed delivery; `previous` is the parked record it re-parks."""
    return {
        "alert": alert,
        "output": outcome.output,
        "error": outcome.error,
        "attempts": outcome.attempts + int((previous or {}).get("attempts", 0)),
        "redeliveries": int((previous or {}).get("redeliveries", -1)) + 1,
        "parked_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "source": (previous or {}).get("source", source),
    }


async def park(producer: AIOKafkaProducer, topic: str, record: dict[str, Any]) -> None:
    """Produce and wait for the broker's acknowledgement (the caller commits only after)."""
    key = str(record["alert"].get("account_id", "")).encode()
    await producer.send_and_wait(topic, orjson.dumps(record), key=key)
