"""Detection: each ledger entry, as the ingest agent appends it -> detectors -> pw.alerts.

The ingest agent (streams/ingest.py) hands every entry it sequences to `Detection.entry`, in
`seq` order per account, so every detector sees each account's events once and in ledger order
and decides on event time; replaying the ledger reproduces every alert with the same
`alert_id` (`partnerwatch evaluate` checks it). Running in the ingest agent, not behind a second
hop over pw.ledger, saves a transaction commit (up to `PW_COMMIT_INTERVAL`) of latency per alert.

Alerts are published at once by a producer of their own (`streams/alert_publisher.py`), not in
the ingest transaction, so they are visible within milliseconds instead of at the next commit;
each batch waits for their delivery before its source offsets can commit. The price: after a
crash, the events of the uncommitted transaction are sequenced again and may publish an alert
version a second time, identical (same `alert_id` and `count`); consumers keep the latest
version per `alert_id` (the warehouse's ReplacingMergeTree, the alert feeds).

State lives in two account-keyed tables: `account_state` (authorization, each detector's own
state, the account's open alerts and the last `seq` it saw, changed in place and written once per
account and batch) and `open_alerts` (the latest version of each open alert; an alert without new
evidence for `OPEN_DAYS` of event time is closed and dropped, so the table stays bounded). Their
changelog records go out in the ingest transaction (streams/batch_writer.py), so after a crash
the tables come back as of the last committed batch. A recovered state is not trusted for that:
when ingest takes up a partition, each account's state `seq` is checked against the ledger's head
and a state that is missing, behind or ahead is rebuilt from the ledger (streams/state_repair.py),
and `entry` refuses a state with a gap before the entry it folds. An entry at or below the
state's `seq` is skipped, and `fold` ignores a `seq` it has seen.
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.run import apply_entry, new_state
from pipeline.config import DetectionConfig
from streams import ml_models, state_repair
from streams.alert_publisher import publisher
from streams.app import settings
from streams.batch_writer import BatchWriter
from streams.detect_metrics import DetectMetrics
from streams.topics import account_state, open_alerts

CONFIG: DetectionConfig = settings.detect
METRICS = DetectMetrics()


class Detection:
    """Detection over one batch of the ingest agent; `flush` writes the touched account states."""

    def __init__(self, writer: BatchWriter) -> None:
        self.writer = writer
        #: account -> (its working state, the batch's last Faust event of the account)
        self.touched: dict[str, tuple[dict[str, Any], Any]] = {}

    async def entry(self, entry: dict[str, Any], event: Any) -> None:
        """Run the detectors over one sequenced entry; `event` is the Faust event it came from."""
        account = entry["account_id"]
        if account in self.touched:
            state = self.touched[account][0]
        else:
            # Changed in place and written back in `flush`: one table write per batch.
            state = account_state.get(account) or new_state()
        msg = event.message
        seq, prior = int(entry["seq"]), int(state.get("seq", 0))
        if seq > prior + 1:
            # Entries before this one are missing from the state: never fold into it. Rebuilt
            # from the ledger (its entries up to seq - 1 are committed), logged and counted.
            stale = state_repair.Stale(account, "gap" if prior else "missing", prior, seq - 1)
            state = (await state_repair.repair(msg.partition, [stale], self.writer))[account]
        self.touched[account] = (state, event)
        timings = METRICS.sample()
        applied = apply_entry(state, entry, CONFIG, ml_models.current(), open_alerts.get, timings)
        if applied is None:
            return  # already folded into this state before a crash
        for alert in applied.alerts:
            self.writer.table_set(open_alerts, msg.partition, alert["alert_id"], alert)
            await publisher.publish(account.encode(), orjson.dumps(alert), msg.partition)
            METRICS.alert_published(msg)
        METRICS.record(timings)
        for key in applied.closed:
            self.writer.table_delete(open_alerts, msg.partition, key)

    async def flush(self) -> None:
        """Wait for the batch's alerts to be delivered, then hand its account states to the writer."""
        await publisher.delivered()
        for account, (state, event) in self.touched.items():
            self.writer.table_set(account_state, event.message.partition, account, state)
        self.touched.clear()
