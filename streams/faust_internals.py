"""Every private attribute of Faust and aiokafka the worker touches, in one place.

Each hook below relies on how faust-streaming and aiokafka work inside, at the versions in
`TESTED`; importing this module with any other version installed raises RuntimeError (see
pipeline/dependency_pins.py), so an upgrade is a deliberate act: re-read these hooks against
the new code, then move the pins here and in pyproject.toml together.
"""

from __future__ import annotations

from typing import Any

from pipeline.dependency_pins import require_tested

TESTED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
require_tested(TESTED, __name__)


async def fetch_cluster_metadata(consumer: Any) -> Any:
    """Fresh cluster metadata through an aiokafka consumer's client. (`consumer.topics()` fetches
    it but leaves it out of the consumer's cluster view, so `partitions_for_topic` stays None for
    a topic created after the consumer started.)"""
    return await consumer._client.fetch_all_metadata()
