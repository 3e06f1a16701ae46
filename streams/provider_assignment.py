"""One active provider stage: the ledger group's assignor and rebalance listener
(streams/provider_stage.py).

One active instance: every worker runs the stage (`PW_PROVIDER_STAGE=worker`) or one process
runs it (`partnerwatch provider-stage`); the group's assignor (`OneActive`) gives every ledger
partition to one member, preferring the one that already holds them, so the others are hot
standbys. When the holder dies the group rebalances within the session timeout (10 s) and
another member takes over from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

if TYPE_CHECKING:
    from streams.provider_stage import ProviderStage


class OneActive(AbstractPartitionAssignor):
    """Every partition to one member: the one that holds them now if it is still there, else the
    first by member id. `holding` is this process's claim, sent in its join metadata."""

    name = "pw-one-active"
    version = 0
    holding = False

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            cls.version, sorted(topics), b"1" if cls.holding else b""
        )

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        claiming = sorted(m for m, meta in members.items() if meta.user_data == b"1")
        holder = claiming[0] if claiming else min(members)
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        everything = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, everything if member == holder else [], b""
            )
            for member in members
        }

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        cls.holding = bool(assignment.partitions())


class StageListener(ConsumerRebalanceListener):
    def __init__(self, stage: ProviderStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            await self.stage.hand_over()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            await self.stage.take_over(sorted(tp.partition for tp in assigned))
