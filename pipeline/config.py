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
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from pipeline.detection_config import DetectionConfig as DetectionConfig
from pipeline.detection_config import is_secret, setting
from pipeline.kafka_settings import KafkaConnection

#: The folder that holds the packages: the repository in a source checkout (or an editable
#: install), site-packages in an installed wheel. Code that needs the repository (bench, tests,
#: the local worker's working directory) asks `checkout()` first.
REPO_ROOT = Path(__file__).resolve().parent.parent

PREFIX = "PW_"
DETECT_PREFIX = "PW_DETECT_"
#: Names a file of `PW_*=value` lines read under the environment; itself only read from the environment.
ENV_FILE_VARIABLE = "PW_ENV_FILE"


def checkout() -> Path | None:
    """The source checkout these packages run from, or None when installed (e.g. from a wheel)."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


#: How the docs show PW_DATA_DIR's default (`default_data_dir`), which depends on where the code runs.
DATA_DIR_DEFAULT_TEXT = "data/ of the checkout; installed: $XDG_DATA_HOME/partnerwatch"


def default_data_dir() -> Path:
    """PW_DATA_DIR's default, the same whatever folder a command runs from: the checkout's `data/`
    when the code runs from a source checkout (or an editable install), else the user's data folder
    (`$XDG_DATA_HOME/partnerwatch`, by default `~/.local/share/partnerwatch`)."""
    root = checkout()
    if root is not None:
        return root / "data"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "partnerwatch"


def redact_url(url: str) -> str:
    """`clickhouse://user:secret@host/db` -> `clickhouse://user:***@host/db` (for logs and errors)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)


# The layers one `from_env` call reads (label, variables), highest first; None: the process's own.
_LAYERS: ContextVar[list[tuple[str, Mapping[str, str | None]]] | None] = ContextVar(
    "pw_settings_layers", default=None
)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`."""

    def __init__(
        self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]
    ) -> None:
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._variables.items()}


def _layers(environ: Mapping[str, str]) -> list[tuple[str, Mapping[str, str | None]]]:
    layers: list[tuple[str, Mapping[str, str | None]]] = [("environment", environ)]
    path = environ.get(ENV_FILE_VARIABLE, "")
    if path:
        if not Path(path).is_file():
            raise ValueError(f"{ENV_FILE_VARIABLE}={path!r}: no such file")
        values = dotenv_values(path)
        values.pop(ENV_FILE_VARIABLE, None)  # names no further file
        layers.append((f"file {path}", values))
    return layers


@dataclass(frozen=True)
class Variable:
    """One `PW_*` variable: its name, where it lives on Settings, and its field."""

    env: str
    path: tuple[str, ...]
    info: FieldInfo

    @property
    def secret(self) -> bool:
        return is_secret(self.info)

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)


class Settings(KafkaConnection):
    """Typed settings; build with `Settings.from_env()`. The Kafka address and the clients'
    security settings come first, from `KafkaConnection` (pipeline/kafka_settings.py)."""

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
    app_id: str = setting(
        "partnerwatch",
        "Faust application id: consumer group and changelog topic prefix",
        min_length=1,
    )
    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(),
        description="local state: worker log, Faust tables, the embedded warehouse (a relative path is taken from the current folder and shown absolute)",
    )
    clickhouse_url: str = setting(
        "", "empty: embedded chDB in PW_DATA_DIR/warehouse; or clickhouse://user:pass@host:9000/db"
    )
    clickhouse_cluster: str = setting(
        "",
        "empty: single server; else the cluster (remote_servers) migrations target: Replicated tables, Distributed tables, ON CLUSTER (`partnerwatch migrate --print-ddl`)",
    )
    retention_days: int = setting(
        730, "TTL of audit.events and audit.alerts (evidence: at least 730)", ge=1
    )
    # float: fractions of a day are allowed (tests use seconds); the default stays `7` in the docs table.
    dedup_window_days: float = setting(
        7, "a repeated event_id within this window is accepted once", gt=0, allow_inf_nan=False
    )
    max_event_bytes: int = setting(65536, "larger ingest messages go to the dead-letter topic")
    warehouse_batch_rows: int = setting(
        20000, "warehouse insert batch: at most this many rows", ge=1
    )
    warehouse_batch_seconds: float = setting(1.0, "warehouse insert batch: at most this old")
    warehouse_loader: Literal["inprocess", "external"] = setting(
        "inprocess",
        "who loads the warehouse: inprocess (a thread of the worker; the only choice with the embedded chDB warehouse, which one process opens at a time) or external (`partnerwatch loader`, a process of its own; needs PW_CLICKHOUSE_URL)",
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
        "GET /v1/alerts/stream: alerts queued per subscriber; a client that falls further behind is disconnected (it resumes with Last-Event-ID)",
        ge=1,
    )
    sse_keepalive: float = setting(
        15.0, "GET /v1/alerts/stream: seconds between keep-alive comments", gt=0
    )
    model_dir: str = setting(
        "", "behaviour model artifacts (`partnerwatch train`; empty: PW_DATA_DIR/models)"
    )
    model_reload_seconds: float = setting(
        60.0, "how often the worker looks for a newer behaviour model artifact"
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

    provider_stage: Literal["worker", "off"] = setting(
        "worker",
        "the provider-wide stage (streams/provider_stage.py): `worker` runs it in every worker, one active at a time; `off` leaves it to `partnerwatch provider-stage`",
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _LAYERS.get()
        if layers is None:
            layers = _layers(os.environ)
        return (
            init_settings,
            *(_MappingSource(settings_cls, variables) for _, variables in layers),
        )

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
            raise ValueError(_one_line(exc, layers, overrides)) from None
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
        """The topics `partnerwatch topics` creates (the worker's; the parked topic is the feed's)."""
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
    def state_topics(self) -> list[str]:
        """The ingest service's compacted state topics (partitioned as the actions topic)."""
        return [self.account_state_topic, self.open_alerts_topic]

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


def shown_value(settings: Settings, var: Variable) -> str:
    """A variable's value as `partnerwatch config` prints it: secrets as ***, URL passwords hidden,
    severities as `detector=level,...` (the variable's own form)."""
    value = settings.value(var)
    if var.secret and value:
        return "***"
    if isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, Path):
        value = str(value)
    return repr(redact_url(value)) if isinstance(value, str) else str(value)


def _lookup(values: Mapping[str, str | None], env: str) -> str | None:
    if env in values:
        return values[env]
    lowered = env.lower()
    return next((v for k, v in values.items() if k.lower() == lowered), None)


def variables() -> list[Variable]:
    """Every `PW_*` variable Settings reads, in declaration order (detection last)."""
    out = [
        Variable(PREFIX + name.upper(), (name,), info)
        for name, info in Settings.model_fields.items()
        if name != "detect"
    ]
    out += [
        Variable(DETECT_PREFIX + name.upper(), ("detect", name), info)
        for name, info in DetectionConfig.model_fields.items()
    ]
    return out


def _env_name(loc: tuple[int | str, ...]) -> str:
    if loc and loc[0] == "detect" and len(loc) > 1:
        return DETECT_PREFIX + str(loc[1]).upper()
    return PREFIX + str(loc[0]).upper() if loc else "PW_*"


def _one_line(
    exc: ValidationError,
    layers: list[tuple[str, Mapping[str, str | None]]],
    overrides: Mapping[str, Any],
) -> str:
    """pydantic's report -> `PW_X='bad': what is wrong` (one line; secrets never shown)."""
    secret = {v.env for v in variables() if v.secret}
    parts = []
    for error in exc.errors(include_url=False):
        env = _env_name(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if error["type"] == "extra_forbidden":
            parts.append(f"{env} is not a detector setting (see `partnerwatch config --detectors`)")
            continue
        raw: Any = error["input"]
        where: str | None = "override" if error["loc"][0] in overrides else None
        if where is None:
            raw, where = next(
                ((r, label) for label, values in layers if (r := _lookup(values, env)) is not None),
                (raw, None),
            )
        shown = "***" if env in secret else repr(raw)
        parts.append(
            f"{env}={shown}{f' ({where})' if where and where != 'environment' else ''}: {message}"
        )
    return "; ".join(parts)


def _default_text(var: Variable) -> str:
    return "(empty)" if var.path == ("detect", "severities") else f"`{var.default}`"


def markdown_table() -> str:
    """The configuration table of docs/operations.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in variables():
        if var.path[0] != "detect":
            default = (
                DATA_DIR_DEFAULT_TEXT
                if var.path == ("data_dir",)
                else var.default
                if var.default != ""
                else "(empty)"
            )
            lines.append(f"| `{var.env}` | `{default}` | {var.info.description} |")
    lines.append(
        f"| `{ENV_FILE_VARIABLE}` | `(empty)` | a file of `PW_*=value` lines read under the environment (a variable set in the environment wins) |"
    )
    return "\n".join(lines)


def detector_markdown_table() -> str:
    """The detector settings table of docs/detectors.md (`PW_DETECT_*`)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in variables():
        if var.path[0] == "detect":
            lines.append(f"| `{var.env}` | {_default_text(var)} | {var.info.description} |")
    return "\n".join(lines)
