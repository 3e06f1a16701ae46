"""Detect agent: pw.ledger -> fold grant events into account state -> run detectors -> pw.alerts.

Input is the ledger, so every detector sees each account's events once and in `seq` order, and
decides on event time; replaying the ledger reproduces every alert with the same `alert_id`.
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors import ALL
from pipeline.alert import alert_id, fold
from pipeline.grants import apply
from pipeline.ledger import event_of
from streams.app import app
from streams.topics import account_grants, alerts_topic, ledger_topic, open_alerts

GRANT_ACTIONS = frozenset({"permission.grant", "permission.revoke"})


@app.agent(ledger_topic)
async def detect(stream: Any) -> None:
    async for event in stream.events():
        msg = event.message
        entry = orjson.loads(msg.value)
        action = event_of(entry)
        account = action["account_id"]
        grants = account_grants.get(account) or {}
        if action["action"] in GRANT_ACTIONS:
            grants = dict(grants)
            if apply(grants, action):
                account_grants[account] = grants
        for detector in ALL:
            finding = detector(action, grants)
            if finding is None:
                continue
            key = alert_id(finding.detector, finding.key, finding.window)
            previous = open_alerts.get(key)
            alert = fold(previous, finding, action, entry["seq"])
            if alert == previous:
                continue  # this event is already part of the alert's evidence
            open_alerts[key] = alert
            await alerts_topic.send(key=msg.key, value=orjson.dumps(alert), partition=msg.partition)
