"""Detect agent: pw.ledger -> fold authorization events -> run detectors -> pw.alerts.

Input is the ledger, so every detector sees each account's events once and in `seq` order, and
decides on event time; replaying the ledger reproduces every alert with the same `alert_id`.
Entries are handled in batches (`take_events`; acked once the batch is done).
State lives in two account-keyed tables: `account_state` (authorization, each detector's own
state and the account's open alerts, changed in place and written once per account and batch)
and `open_alerts` (the latest version
of each open alert; an alert without new evidence for `OPEN_DAYS` of event time is closed and
dropped, so the table stays bounded). Their
changelogs are not part of the Kafka transaction, so after a crash they may be a little ahead
of the ledger position; folding is idempotent for that reason (`fold` ignores a `seq` it has
already seen).
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.config import DetectionConfig
from detectors.run import new_state, observe
from pipeline.alert import alert_id, closed_alerts, fold
from pipeline.ledger import event_of
from streams import ml_models
from streams.app import app
from streams.detect_metrics import DetectMetrics
from streams.topics import (
    account_state,
    alerts_topic,
    ledger_topic,
    open_alerts,
    table_delete,
    table_set,
)

CONFIG = DetectionConfig.from_env()
METRICS = DetectMetrics()


#: Ledger entries handled per batch: account states are written to their table once per batch,
#: not once per event (a state holds every detector's windows, so each write is large).
BATCH_EVENTS = 1000
BATCH_SECONDS = 0.05


@app.agent(ledger_topic)
async def detect(stream: Any) -> None:
    async for events in stream.take_events(BATCH_EVENTS, within=BATCH_SECONDS):
        # account -> (its working state, the batch's last event of the account)
        touched: dict[str, tuple[dict[str, Any], Any]] = {}
        for event in events:
            msg = event.message
            entry = orjson.loads(msg.value)
            action = event_of(entry)
            account = action["account_id"]
            if account in touched:
                state = touched[account][0]
            else:
                # Changed in place and written back below: the table sees one write per batch.
                state = account_state.get(account) or new_state()
            touched[account] = (state, event)
            timings = METRICS.sample()
            for finding in observe(state, action, CONFIG, ml_models.current(), timings=timings):
                key = alert_id(finding.detector, finding.key, finding.window)
                before = open_alerts.get(key)
                alert = fold(before, finding, action, entry["seq"])
                if alert is before:
                    continue  # a replayed event, already part of the alert
                table_set(open_alerts, msg.partition, key, alert)
                state.setdefault("open", {})[key] = alert["last_seen"]
                await alerts_topic.send(key=msg.key, value=orjson.dumps(alert), partition=msg.partition)
                METRICS.alert_published(msg)
            METRICS.record(timings)
            for key in closed_alerts(state.get("open", {}), action["occurred_at"]):
                del state["open"][key]
                table_delete(open_alerts, msg.partition, key)
        for account, (state, event) in touched.items():
            table_set(account_state, event.message.partition, account, state)
