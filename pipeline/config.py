"""All configuration, from environment variables with the `PW_` prefix, typed, in one place.

The configuration table in docs/operations.md is generated from `Settings` (`partnerwatch config --markdown`),
so the docs and the code cannot drift apart.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: The folder that holds the packages: the repository in a source checkout (or an editable
#: install), site-packages in an installed wheel. Code that needs the repository (bench, tests,
#: the local worker's working directory) asks `checkout()` first.
REPO_ROOT = Path(__file__).resolve().parent.parent


def checkout() -> Path | None:
    """The source checkout these packages run from, or None when installed (e.g. from a wheel)."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


def _setting(default: Any, env: str, help: str, secret: bool = False) -> Any:
    """A setting; a `secret` one is left out of repr() and shown as *** by `redacted()`."""
    return field(default=default, repr=not secret, metadata={"env": env, "help": help, "secret": secret})


def redact_url(url: str) -> str:
    """`clickhouse://user:secret@host/db` -> `clickhouse://user:***@host/db` (for logs and errors)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)


@dataclass(frozen=True)
class Settings:
    """Typed settings; build with `Settings.from_env()`."""

    kafka_broker: str = _setting("127.0.0.1:9092", "PW_KAFKA_BROKER", "Kafka bootstrap servers, host:port[,host:port]")
    topic_prefix: str = _setting("pw.", "PW_TOPIC_PREFIX", "prefix of every topic name (actions, ledger, alerts, deadletter)")
    topic_partitions: int = _setting(4, "PW_TOPIC_PARTITIONS", "partitions of the pipeline topics (fixed once created)")
    app_id: str = _setting("partnerwatch", "PW_APP_ID", "Faust application id: consumer group and changelog topic prefix")
    data_dir: Path = _setting(Path("data"), "PW_DATA_DIR", "local state: worker log, Faust tables, the embedded warehouse")  # noqa: RUF009
    clickhouse_url: str = _setting("", "PW_CLICKHOUSE_URL", "empty: embedded chDB in PW_DATA_DIR/warehouse; or clickhouse://user:pass@host:9000/db")
    clickhouse_cluster: str = _setting("", "PW_CLICKHOUSE_CLUSTER", "empty: single server; else the cluster (remote_servers) migrations target: Replicated tables, Distributed tables, ON CLUSTER (`partnerwatch migrate --print-ddl`)")
    retention_days: int = _setting(730, "PW_RETENTION_DAYS", "TTL of audit.events and audit.alerts (evidence: at least 730)")
    dedup_window_days: float = _setting(7, "PW_DEDUP_WINDOW_DAYS", "a repeated event_id within this window is accepted once")
    max_event_bytes: int = _setting(65536, "PW_MAX_EVENT_BYTES", "larger ingest messages go to the dead-letter topic")
    batch_rows: int = _setting(5000, "PW_WAREHOUSE_BATCH_ROWS", "warehouse insert batch: at most this many rows")
    batch_seconds: float = _setting(1.0, "PW_WAREHOUSE_BATCH_SECONDS", "warehouse insert batch: at most this old")
    commit_interval: float = _setting(0.5, "PW_COMMIT_INTERVAL", "seconds between Kafka transaction commits (bounds alert latency)")
    processing_guarantee: str = _setting("exactly_once", "PW_PROCESSING_GUARANTEE", "exactly_once (default, keeps the chain gap-free) or at_least_once")
    web_host: str = _setting("127.0.0.1", "PW_WEB_HOST", "bind address of the worker's web server")
    web_port: int = _setting(6066, "PW_WEB_PORT", "port of the worker's web server (health, SQL)")
    api_token: str = _setting("", "PW_API_TOKEN", "bearer token required by the worker's HTTP API (empty: none, loopback only)", secret=True)
    log_level: str = _setting("info", "PW_LOG_LEVEL", "debug, info, warning or error")
    mask_key: str = _setting("", "PW_MASK_KEY", "HMAC key of masked bank and personal data (empty: unkeyed SHA-256, guessable: set it)", secret=True)
    ingest_hmac_secret: str = _setting("", "PW_INGEST_HMAC_SECRET", "POST /v1/events also accepts requests signed with this secret (empty: bearer token only)", secret=True)
    ingest_hmac_window: int = _setting(300, "PW_INGEST_HMAC_WINDOW", "seconds a signed request's timestamp may differ from now; a signature is accepted once")
    http_max_body_bytes: int = _setting(1048576, "PW_HTTP_MAX_BODY_BYTES", "POST /v1/events: larger bodies are refused (413)")
    http_max_events: int = _setting(1000, "PW_HTTP_MAX_EVENTS", "POST /v1/events: at most this many events per request (413)")
    http_rate: float = _setting(50.0, "PW_HTTP_RATE", "POST /v1/events: requests per second per credential, sustained (0: no limit)")
    http_burst: int = _setting(100, "PW_HTTP_BURST", "POST /v1/events: requests per credential allowed at once above the rate (429 beyond)")
    digest_key_file: str = _setting("", "PW_DIGEST_KEY_FILE", "Ed25519 private key (PEM) signing chain digests and evidence manifests (`partnerwatch digest keygen`)")
    digest_hmac_key: str = _setting("", "PW_DIGEST_HMAC_KEY", "HMAC-SHA256 key for digests when no PW_DIGEST_KEY_FILE (verifying needs the same key)", secret=True)
    digest_period: str = _setting("hour", "PW_DIGEST_PERIOD", "chain digests per account and closed period: hour or day")
    digest_interval: float = _setting(300.0, "PW_DIGEST_INTERVAL", "seconds between the worker's digest runs when a digest key is set (0: off, use `partnerwatch digest create`)")
    digest_delay: float = _setting(120.0, "PW_DIGEST_DELAY", "seconds after a period closes before it is digested (late rows reach the warehouse)")
    sse_queue_size: int = _setting(1000, "PW_SSE_QUEUE_SIZE", "GET /v1/alerts/stream: alerts queued per subscriber; a client that falls further behind is disconnected (it resumes with Last-Event-ID)")
    sse_keepalive: float = _setting(15.0, "PW_SSE_KEEPALIVE", "GET /v1/alerts/stream: seconds between keep-alive comments")
    model_dir: str = _setting("", "PW_MODEL_DIR", "behaviour model artifacts (`partnerwatch train`; empty: PW_DATA_DIR/models)")
    model_reload_seconds: float = _setting(60.0, "PW_MODEL_RELOAD_SECONDS", "how often the worker looks for a newer behaviour model artifact")
    alert_routes: str = _setting("", "PW_ALERT_ROUTES", "routes file (TOML or YAML) of `partnerwatch alerts feed`: outputs and which alerts go to them (infra/alerts/routes.example.toml)")
    alert_feed_metrics_port: int = _setting(9466, "PW_ALERT_FEED_METRICS_PORT", "port of the alert feed's /metrics server (0: none)")
    alert_feed_metrics_host: str = _setting("127.0.0.1", "PW_ALERT_FEED_METRICS_HOST", "bind address of the alert feed's /metrics server (0.0.0.0 only inside a private network, e.g. compose)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `PW_*` variables; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None:
                continue
            # A float setting may have an integral default (shown as `7` in the docs table).
            kind: Any = float if f.type in ("float", float) else type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None
        settings = replace(cls(), **values, **overrides)
        settings.check()
        return settings

    def check(self) -> None:
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError("PW_LOG_LEVEL must be debug, info, warning or error")
        if self.processing_guarantee not in ("exactly_once", "at_least_once"):
            raise ValueError("PW_PROCESSING_GUARANTEE must be exactly_once or at_least_once")
        if self.retention_days < 1 or not 0 < self.dedup_window_days < math.inf or self.topic_partitions < 1:
            raise ValueError("PW_RETENTION_DAYS, PW_DEDUP_WINDOW_DAYS (finite, fractions allowed) and PW_TOPIC_PARTITIONS must be positive")
        if self.clickhouse_cluster and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.clickhouse_cluster):
            raise ValueError("PW_CLICKHOUSE_CLUSTER must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        if self.digest_period not in ("hour", "day"):
            raise ValueError("PW_DIGEST_PERIOD must be hour or day")
        if self.sse_queue_size < 1 or self.sse_keepalive <= 0:
            raise ValueError("PW_SSE_QUEUE_SIZE and PW_SSE_KEEPALIVE must be positive")

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.redacted().items()) + ")"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to print or log: secrets as ***, URL passwords hidden."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[f.name] = value
        return out

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
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}deadletter"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else self.data_dir / "models"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"


def markdown_table() -> str:
    """The configuration table of docs/operations.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = f.default if f.default != "" else "(empty)"
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(lines)
