"""Amazon's SP-API notifications, read from SQS or received from EventBridge, as ledger events.

Amazon reports changes to listings, offers, funds and account status through notifications; no
notification names who made the change (../shared/AMAZON.md). Each one becomes an event with
actor type `amazon` (`events.py`; each type's payload is read by `payloads.py`), after
defensive parsing (`parse.py`): envelope fields read case-insensitively, payloads flat or
wrapped, payload versions per type. Duplicates are dropped
by NotificationId (`seen.py`, and a deterministic event id the ledger stores once).

- `sqs.py`: a standard queue, long polling; a message is deleted only after Kafka acknowledged
  its events (a crash in between redelivers it, and the repeat is dropped).
- `eventbridge.py`: an authenticated HTTP endpoint for an EventBridge API destination; the
  notification is the event's `detail`; the answer waits for Kafka's acknowledgement.

This package imports only `pipeline`, the gateway's helpers and third-party libraries: events
leave through an injected `emit` callable (the composition root builds it on sinks/kafka_io.py).
"""
