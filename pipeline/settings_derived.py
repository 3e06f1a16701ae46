"""What follows from the settings: topic names (docs/contract.md), consumer groups, client ids,
the warehouse and model folders, the web server's URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.kafka_settings import KafkaConnection


class DerivedNames(KafkaConnection):
    """The names `Settings` derives from its fields (declared on `Settings`)."""

    if TYPE_CHECKING:
        topic_prefix: str
        app_id: str
        data_dir: Path
        model_dir: str
        web_host: str
        web_port: int

    # Topic names (docs/contract.md)
    @property
    def actions_topic(self) -> str:
        return f"{self.topic_prefix}actions"

    @property
    def ledger_topic(self) -> str:
        return f"{self.topic_prefix}ledger"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}alerts"

    @property
    def provider_state_topic(self) -> str:
        """The provider stage's state snapshots: compacted, one record per provider or account."""
        return f"{self.topic_prefix}provider-state"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}deadletter"

    @property
    def parked_topic(self) -> str:
        """The alert feed's dead letters: alerts an output refused after the retry budget."""
        return f"{self.topic_prefix}alerts.parked"

    @property
    def alert_status_topic(self) -> str:
        """Lifecycle actions (ack, resolve, reopen) for the alert feed's outputs (sinks/alert_delivery/lifecycle.py)."""
        return f"{self.topic_prefix}alerts.status"

    @property
    def signatures_topic(self) -> str:
        """Signatures of accepted signed HTTP requests, shared by every worker against replay (streams/web/signatures.py)."""
        return f"{self.topic_prefix}http-signatures"

    @property
    def pipeline_topics(self) -> list[str]:
        """The pipeline topics (with `state_topics`, what `partnerwatch topics` creates; the parked topic is the feed's)."""
        return [
            self.actions_topic,
            self.ledger_topic,
            self.alerts_topic,
            self.deadletter_topic,
            self.signatures_topic,
            self.alert_status_topic,
            self.provider_state_topic,
        ]

    @property
    def account_state_topic(self) -> str:
        """Each account's detection state, keyed by account (compacted): the ingest service's
        changelog, named as the Faust table it replaced named it."""
        return f"{self.app_id}-account_state-changelog"

    @property
    def open_alerts_topic(self) -> str:
        """The latest version of each open alert, keyed by alert id (compacted), likewise."""
        return f"{self.app_id}-open_alerts-changelog"

    @property
    def ledger_snapshot_topic(self) -> str:
        """Snapshots of each ledger partition's sequencing state (pipeline/ledger_snapshot.py)."""
        return f"{self.app_id}-ledger_state-snapshot"

    @property
    def state_topics(self) -> list[str]:
        """The ingest service's compacted state topics (partitioned as the actions topic)."""
        return [self.account_state_topic, self.open_alerts_topic, self.ledger_snapshot_topic]

    # Consumer groups
    @property
    def worker_group(self) -> str:
        """The worker's Faust agents (alerts, dead letters); Faust's application id."""
        return self.app_id

    @property
    def ingest_group(self) -> str:
        """The ingest service (actions): its members share the actions topic's partitions."""
        return f"{self.app_id}-ingest"

    def ingest_transactional_id(self, partition: int) -> str:
        """The transactional id of the producer of one actions partition: whoever owns the
        partition next starts a producer with the same id, which fences this one."""
        return f"{self.app_id}-ingest-{partition}"

    @property
    def warehouse_group(self) -> str:
        """The worker's warehouse loader (ledger and alerts)."""
        return f"{self.app_id}-warehouse"

    @property
    def provider_group(self) -> str:
        """The provider-wide stage (the ledger); one member at a time holds every partition."""
        return f"{self.app_id}-provider"

    @property
    def provider_transactional_id(self) -> str:
        """The provider stage's checkpoint producer: a new holder fences the one before."""
        return f"{self.app_id}-provider-stage"

    @property
    def alert_feed_group(self) -> str:
        """`partnerwatch alerts feed` (alerts)."""
        return f"{self.app_id}-alert-feed"

    @property
    def alert_redeliver_group(self) -> str:
        """`partnerwatch alerts redeliver` (the parked topic)."""
        return f"{self.app_id}-alert-redeliver"

    def client_id(self, role: str) -> str:
        """A Kafka client id, `<app id>-<role>`: which process and part a broker-side connection is."""
        return f"{self.app_id}-{role}"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else self.data_dir / "models"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"
