"""Agents that watch the pipeline's outputs (alerts, dead letters) and count them."""

from __future__ import annotations

from typing import Any

import orjson

from sinks import metrics
from streams.app import app
from streams.topics import alerts_topic, deadletter_topic


@app.agent(alerts_topic)
async def count_alerts(stream: Any) -> None:
    async for value in stream:
        alert = orjson.loads(value)
        metrics.ALERTS.labels(alert["detector"], alert["severity"]).inc()


@app.agent(deadletter_topic)
async def count_rejections(stream: Any) -> None:
    async for value in stream:
        metrics.EVENTS_REJECTED.labels(orjson.loads(value)["reason"]).inc()
