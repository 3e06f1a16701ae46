"""The pipeline's topics (docs/contract.md) and detection's keyed state tables.

Values are raw bytes decoded with orjson in the agents: cheaper than a Record per event. The
tables are keyed by something that lives on one partition of the account-keyed topics, so state
moves with the events that change it. The ingest agent writes their changelogs itself, in the
source partition's Kafka transaction (streams/batch_writer.py), never through `table[key] = ...`;
sequencing state is not kept in a table at all (see streams/ingest.py).
"""

from __future__ import annotations

from streams.app import app, settings

PARTITIONS = settings.topic_partitions

actions_topic = app.topic(
    settings.actions_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
ledger_topic = app.topic(
    settings.ledger_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
alerts_topic = app.topic(
    settings.alerts_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
deadletter_topic = app.topic(
    settings.deadletter_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)

#: account_id -> {"auth": grants, approvals, policy; "det": each detector's own state}.
account_state = app.Table("account_state", partitions=PARTITIONS, key_type=str)
#: alert_id -> latest alert version, so repeated findings update one alert.
open_alerts = app.Table("open_alerts", partitions=PARTITIONS, key_type=str)
