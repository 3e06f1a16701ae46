"""The pipeline topics the worker's Faust agents consume (docs/contract.md).

Values are raw bytes decoded with orjson in the agents: cheaper than a Record per event. The
actions topic is read by the ingest service with a client of its own (streams/ingest.py), and
its state lives in topics of its own (`Settings.state_topics`), not in Faust tables.
"""

from __future__ import annotations

from streams.app import app, settings

PARTITIONS = settings.topic_partitions

alerts_topic = app.topic(
    settings.alerts_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
deadletter_topic = app.topic(
    settings.deadletter_topic, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS
)
