"""All configuration, from `PW_*` environment variables, typed and checked in one place (pydantic-settings).

Every setting's variable is `PW_<FIELD>` (upper case); the detectors' thresholds are nested under
`detect` and read from `PW_DETECT_<FIELD>`, with `PW_DETECT_SEVERITIES="detector=level,..."`.
Where a value comes from, highest first: an override given in code (a command-line option), the
environment, the file named by `PW_ENV_FILE` (KEY=value lines), the default. A bad value raises
ValueError with one line that names the variable (`partnerwatch` prints it and exits 2).

The configuration tables of docs/operations.md and docs/detectors.md are generated from these
classes (`partnerwatch config --markdown`, `--detectors --markdown`), so the docs and the code
cannot drift apart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import SettingsConfigDict, SettingsError

from pipeline import settings_catalog as catalog
from pipeline.detection_config import DetectionConfig as DetectionConfig
from pipeline.detection_config import is_secret, setting
from pipeline.locations import DATA_DIR_DEFAULT_TEXT as DATA_DIR_DEFAULT_TEXT
from pipeline.locations import REPO_ROOT as REPO_ROOT
from pipeline.locations import checkout as checkout
from pipeline.locations import default_data_dir
from pipeline.redaction import redact_url as redact_url
from pipeline.settings_catalog import Variable as Variable
from pipeline.settings_catalog import shown_value as shown_value
from pipeline.settings_derived import DerivedNames
from pipeline.settings_sources import _LAYERS, PREFIX, LayeredSettings, _layers, _lookup
from pipeline.settings_sources import DETECT_PREFIX as DETECT_PREFIX
from pipeline.settings_sources import ENV_FILE_VARIABLE as ENV_FILE_VARIABLE


class Settings(LayeredSettings, DerivedNames):
    """Typed settings; build with `Settings.from_env()`. The Kafka address and the clients'
    security settings come first, from `KafkaConnection` (pipeline/kafka_settings.py); where values
    come from is `LayeredSettings` (pipeline/settings_sources.py), the names derived from them
    `DerivedNames` (pipeline/settings_derived.py)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        # PW_DETECT_BULK_MIN_SKUS -> detect.bulk_min_skus: split once, after the nested field's name
        env_nested_delimiter="_",
        env_nested_max_split=1,
        case_sensitive=False,
        extra="ignore",  # other PW_* variables belong to scripts (infra/kafka/kafka.sh) or compose
        frozen=True,
    )

    topic_prefix: str = setting(
        "pw.", "prefix of every topic name (actions, ledger, alerts, deadletter)"
    )
    topic_partitions: int = setting(
        4, "partitions of the pipeline topics (fixed once created)", ge=1
    )
    topic_replication: int = setting(
        1,
        "replication factor of the topics PartnerWatch creates (fixed once created; 3 on a cluster of 3 or more brokers)",
        ge=1,
    )
    topic_min_insync: int = setting(
        0,
        "min.insync.replicas of the topics PartnerWatch creates (0: the brokers' default; 2 with a replication factor of 3)",
        ge=0,
    )
    app_id: str = setting(
        "partnerwatch",
        "Faust application id: consumer group and changelog topic prefix",
        min_length=1,
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="local state: worker log, Faust's data folder, the embedded warehouse (a relative path is taken from the current folder and shown absolute)",
    )
    clickhouse_url: str = setting(
        "", "empty: embedded chDB in PW_DATA_DIR/warehouse; or clickhouse://user:pass@host:9000/db"
    )
    clickhouse_cluster: str = setting(
        "",
        "empty: single server; else the cluster (remote_servers) migrations target: Replicated tables, Distributed tables, ON CLUSTER (`partnerwatch migrate --print-ddl`)",
    )
    retention_days: int = setting(
        730, "TTL of audit.events and audit.alerts, from arrival (evidence: at least 730)", ge=1
    )
    # float: fractions of a day are allowed (tests use seconds); the default stays `7` in the docs table.
    dedup_window_days: float = setting(
        7, "a repeated event_id within this window is accepted once", gt=0, allow_inf_nan=False
    )
    dedup_exact_seconds: float = setting(
        120,
        "the ingest service holds an event id exactly this long, then (once the warehouse holds its entry) only in the dedup window's Bloom filters, confirming what they may hold against the warehouse; 0 holds the whole window exactly (memory grows with rate x window)",
        ge=0,
        allow_inf_nan=False,
    )
    dedup_filter_mb: float = setting(
        64,
        "memory of the dedup window's Bloom filters per actions partition (about 10 bits per id of the window keep confirmations near 1%); 0 holds the whole window exactly",
        ge=0,
        allow_inf_nan=False,
    )
    snapshot_seconds: float = setting(
        60,
        "how often each ingest partition snapshots its chain heads and dedup window to the ledger snapshot topic (and once more when it hands the partition over, if the ledger moved on since), so a restart reads the snapshot and the ledger after it; 0: never (a restart reads the whole ledger partition)",
        ge=0,
        allow_inf_nan=False,
    )
    state_checkpoint_seconds: float = setting(
        1,
        "how often each ingest partition writes the detection states and open alerts its events changed to their state topics (and with every ledger snapshot, the state check's repairs after a load, and a handover); a restart folds the ledger entries after them into the states again, without publishing their alerts again; 0: with every transaction",
        ge=0,
        allow_inf_nan=False,
    )
    max_event_bytes: int = setting(65536, "larger ingest messages go to the dead-letter topic")
    malloc_trim_seconds: float = setting(
        5,
        "how often the worker, `partnerwatch loader` and `partnerwatch provider-stage` hand the heap memory their threads freed back to the system (glibc's malloc_trim, on a thread of its own; a few ms each time; counted in pw_heap_trims_total); 0: never",
        ge=0,
        allow_inf_nan=False,
    )
    malloc_mmap_threshold_kib: int = setting(
        256,
        "in the worker, `partnerwatch loader` and `partnerwatch provider-stage`, glibc serves every allocation of this many KiB or more (record batches, fetch buffers) with a mapping of its own, returned to the system when freed, instead of raising the threshold as it goes and keeping such blocks in its arenas (mallopt M_MMAP_THRESHOLD); 0: glibc's own (also when MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES sets it)",
        ge=0,
        le=32768,
    )
    warehouse_batch_rows: int = setting(
        20000, "warehouse insert batch: at most this many rows", ge=1
    )
    warehouse_release_above_mib: int = setting(
        896,
        "after each insert batch, while the RSS of the process that loads (the loader process, or the worker with PW_WAREHOUSE_LOADER=inprocess) is above this many MiB, the embedded warehouse hands the memory its engine freed back to the system (SYSTEM JEMALLOC PURGE; counted in pw_warehouse_memory_releases_total); 0: never",
        ge=0,
    )
    warehouse_batch_seconds: float = setting(1.0, "warehouse insert batch: at most this old")
    warehouse_loader: Literal["process", "inprocess", "external"] = setting(
        "process",
        "who loads the warehouse: process (a child process every worker starts, restarts and stops; with the embedded chDB warehouse it owns the warehouse and answers the worker's queries), inprocess (a thread of the worker) or external (`partnerwatch loader`, a process of its own you run; needs PW_CLICKHOUSE_URL)",
    )
    loader_host: str = setting(
        "127.0.0.1", "bind address of `partnerwatch loader`'s health and metrics server"
    )
    loader_port: int = setting(
        6067,
        "port of `partnerwatch loader`'s health and metrics server (GET /v1/health, /metrics)",
        ge=1,
        le=65535,
    )
    commit_interval: float = setting(
        0.5, "seconds between Kafka transaction commits (bounds alert latency)"
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = setting(
        "exactly_once", "exactly_once (default, keeps the chain gap-free) or at_least_once"
    )
    web_host: str = setting("127.0.0.1", "bind address of the worker's web server")
    web_port: int = setting(6066, "port of the worker's web server (health, SQL)")
    api_token: str = setting(
        "",
        "bearer token required by the worker's HTTP API, printable ASCII (empty: none, and the worker then only listens on loopback)",
        secret=True,
        pattern=r"^[\x21-\x7e]*$",
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "debug, info, warning or error"
    )
    log_format: Literal["console", "json"] = setting(
        "console", "log lines as console (readable) or json (one object per line)"
    )
    mask_key: str = setting(
        "",
        "HMAC key of masked bank and personal data (empty: unkeyed SHA-256, guessable: set it)",
        secret=True,
    )
    ingest_hmac_secret: str = setting(
        "",
        "POST /v1/events also accepts requests signed with this secret (empty: bearer token only)",
        secret=True,
    )
    ingest_hmac_window: int = setting(
        300,
        "seconds a signed request's timestamp may differ from now; a signature is accepted once",
    )
    http_max_body_bytes: int = setting(1048576, "POST /v1/events: larger bodies are refused (413)")
    http_max_events: int = setting(
        1000, "POST /v1/events: at most this many events per request (413)"
    )
    http_rate: float = setting(
        50.0, "POST /v1/events: requests per second per credential, sustained (0: no limit)"
    )
    http_burst: int = setting(
        100, "POST /v1/events: requests per credential allowed at once above the rate (429 beyond)"
    )
    digest_key_file: str = setting(
        "",
        "Ed25519 private key (PEM) signing chain digests and evidence manifests (`partnerwatch digest keygen`)",
    )
    digest_hmac_key: str = setting(
        "",
        "HMAC-SHA256 key for digests when no PW_DIGEST_KEY_FILE (verifying needs the same key)",
        secret=True,
    )
    digest_period: Literal["hour", "day"] = setting(
        "hour", "chain digests per account and closed period: hour or day"
    )
    digest_interval: float = setting(
        300.0,
        "seconds between the worker's digest runs when a digest key is set (0: off, use `partnerwatch digest create`)",
    )
    digest_delay: float = setting(
        120.0, "seconds after a period closes before it is digested (late rows reach the warehouse)"
    )
    sse_queue_size: int = setting(
        1000,
        "GET /v1/alerts/stream: alerts queued per subscriber; past it, a client whose writes waited is disconnected (it resumes with Last-Event-ID), one that reads catches up from the topic",
        ge=1,
    )
    sse_keepalive: float = setting(
        15.0, "GET /v1/alerts/stream: seconds between keep-alive comments", gt=0
    )
    model_dir: str = setting(
        "", "behaviour model artifacts (`partnerwatch train`; empty: PW_DATA_DIR/models)"
    )
    model_reload_seconds: float = setting(
        60.0,
        "how often the worker (and the provider-wide stage) looks for a newer behaviour model artifact",
    )
    alert_routes: str = setting(
        "",
        "routes file (TOML or YAML) of `partnerwatch alerts feed`: outputs and which alerts go to them (infra/alerts/routes.example.toml)",
    )
    alert_feed_metrics_port: int = setting(
        9466, "port of the alert feed's /metrics server (0: none)"
    )
    alert_feed_metrics_host: str = setting(
        "127.0.0.1",
        "bind address of the alert feed's /metrics server (0.0.0.0 only inside a private network, e.g. compose)",
    )
    # -- The worker's web surface (issue 15; streams/web/guard.py): every route but /v1/health, /metrics and the
    # -- static /alerts page needs PW_API_TOKEN, and without one the worker refuses to listen beyond loopback.
    web_allowed_hosts: str = setting(
        "",
        "comma-separated host names the worker answers for besides loopback names and PW_WEB_HOST (the Host header, against DNS rebinding; checked when PW_WEB_HOST is loopback or this is set, else 421)",
    )
    web_auth_failure_rate: float = setting(
        0.2,
        "failed authentications per second one client address (IPv6: its /64) may make, sustained, after its burst; beyond, its authenticated requests get 429 with Retry-After (0: no limit)",
        ge=0,
    )
    web_auth_failure_burst: int = setting(
        20,
        "failed authentications one client address may make at once before PW_WEB_AUTH_FAILURE_RATE applies",
        ge=1,
    )
    # -- end of the web surface settings

    # -- user SQL (POST /v1/sql, `partnerwatch sql`, `query`; pipeline/forensics/sql_guard.py) ----
    # The limits every user query runs under (the engine enforces them and the error names the
    # setting), and the read-only ClickHouse user it runs as on a server (never the writer).
    sql_max_execution_time: float = setting(
        60.0,
        "user SQL: seconds a query may run before the engine stops it (it is also cancelled when its HTTP client goes away)",
        gt=0,
    )
    sql_max_memory_usage: int = setting(
        1073741824, "user SQL: bytes of memory one query may use", gt=0
    )
    sql_max_result_rows: int = setting(
        500000, "user SQL: rows one answer may have (aggregate or page with LIMIT beyond)", gt=0
    )
    sql_max_result_bytes: int = setting(
        134217728, "user SQL: bytes one answer may have (in the engine, and as JSON)", gt=0
    )
    sql_max_rows_to_read: int = setting(1000000000, "user SQL: table rows one query may read", gt=0)
    # At most 16: a running query holds one of the loader process's 64 connections
    # (sinks/warehouse_remote.py MAX_CONNECTIONS) and its cancel another, and the worker's own
    # calls need theirs.
    sql_max_concurrent: int = setting(
        4,
        "user SQL: queries one worker runs at once, each on a thread of their own (one more is answered 429 with Retry-After); with PW_SQL_MAX_MEMORY_USAGE it bounds the memory user SQL may take",
        ge=1,
        le=16,
    )
    clickhouse_reader_user: str = setting(
        "partnerwatch_reader",
        "with PW_CLICKHOUSE_URL: the read-only ClickHouse user user SQL runs as (infra/clickhouse/access.sql; never the writer)",
    )
    clickhouse_reader_password: str = setting(
        "", "password of PW_CLICKHOUSE_READER_USER", secret=True
    )

    # -- geoip data of new_country_or_asn and impossible_travel (detectors/geo.py) ----------------
    geoip_city_db: str = setting(
        "",
        "MMDB file for countries: MaxMind GeoLite2/GeoIP2 City or Country, or DB-IP City/Country Lite (empty: the geoip2fast wheel's bundled 2024-06 GeoLite2 data)",
    )
    geoip_asn_db: str = setting(
        "",
        "MMDB file for networks with AS numbers: MaxMind GeoLite2/GeoIP2 ASN or DB-IP ASN Lite (empty: the bundled data, operator names without AS numbers)",
    )
    geoip_max_age_days: int = setting(
        60, "GET /v1/health warns when the geoip data was built longer ago than this", ge=1
    )

    provider_stage: Literal["process", "worker", "off"] = setting(
        "process",
        "the provider-wide stage (streams/provider_stage.py), one active at a time: `process` runs it in a child process every worker starts, restarts and stops (`partnerwatch provider-stage`, streams/provider_stage_child.py); `worker` in a thread of every worker (one process, but the stage takes turns with ingest for the interpreter); `off` leaves it to `partnerwatch provider-stage` run by you",
    )
    rules_dir: str = setting(
        "",
        "folder of Sigma rules (detectors/sigma) the provider stage runs live, reloaded when a file changes (empty: none; `partnerwatch rules` defaults to the shipped examples)",
    )
    provider_checkpoint_seconds: float = setting(
        2.0, "seconds between the provider stage's state checkpoints (and offset commits)", gt=0
    )

    detect: DetectionConfig = Field(
        default_factory=DetectionConfig, description="the detectors' settings (PW_DETECT_*)"
    )

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip().lower()
        return "warning" if value == "warn" else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a folder (empty is not the current folder)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("clickhouse_cluster")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        return value

    @field_validator("topic_min_insync")
    @classmethod
    def _insync_within_replicas(cls, value: int, info: ValidationInfo) -> int:
        replicas = info.data.get("topic_replication")
        if replicas is not None and value > replicas:
            raise ValueError(
                f"is more than PW_TOPIC_REPLICATION={replicas}: no write could ever succeed"
            )
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the `PW_*` variables of `environ` (default: the process's environment) and of the
        file it names in PW_ENV_FILE; `overrides` (field=value) win over both. A bad value raises
        ValueError naming the variable."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"not settings: {', '.join(unknown)}")
        layers = _layers(os.environ if environ is None else environ)
        token = _LAYERS.set(layers)
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            raise ValueError(catalog.one_line(exc, layers, overrides, variables())) from None
        except (
            SettingsError
        ) as exc:  # a value pydantic-settings could not even decode (PW_DETECT='{')
            field = re.search(r'field "(\w+)"', str(exc))
            raise ValueError(f"{PREFIX}{field.group(1).upper() if field else '*'}: {exc}") from None
        finally:
            _LAYERS.reset(token)
        origins = {}
        for var in variables():
            origin = "override" if var.path[0] in overrides else "default"
            if origin == "default":
                origin = next(
                    (label for label, values in layers if _lookup(values, var.env) is not None),
                    origin,
                )
            origins[var.env] = origin
        settings._origins = origins
        return settings

    def origin(self, env: str) -> str:
        """Where the variable's value came from: override, environment, file <path>, or default."""
        return self._origins.get(env, "default")

    def value(self, var: Variable) -> Any:
        out: Any = self
        for name in var.path:
            out = getattr(out, name)
        return out

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield from self.redacted().items()  # repr() and str() never show a secret

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to print or log: secrets as ***, URL passwords hidden."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if is_secret(info) and value:
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            elif isinstance(value, BaseModel):
                value = value.model_dump()
            out[name] = value
        return out


def variables() -> list[Variable]:
    """Every `PW_*` variable Settings reads, in declaration order (detection last)."""
    return catalog.variables_of(Settings)


def markdown_table() -> str:
    """The configuration table of docs/operations.md (`partnerwatch config --markdown`)."""
    return catalog.markdown_table(variables())


def detector_markdown_table() -> str:
    """The detector settings table of docs/detectors.md (`partnerwatch config --detectors --markdown`)."""
    return catalog.detector_markdown_table(variables())
