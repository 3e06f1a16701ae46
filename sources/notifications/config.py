"""Settings of the notification readers: `PW_NOTIFY_*` (and `PW_SQS_ENDPOINT_URL`), typed.

The rest (broker, topics, data folder) comes from `pipeline.config.Settings`;
`partnerwatch notifications config --markdown` prints this table. Secrets are no settings: the
EventBridge endpoint's key is read from `PW_NOTIFY_EVENTBRIDGE_KEY` in the environment, AWS
credentials the way boto3 reads them (environment, profile, instance role).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipeline.marketplaces import site_code


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def from_env(cls: Any, environ: dict[str, str] | None, overrides: dict[str, Any]) -> Any:
    """An instance of the settings dataclass `cls` from the environment (its fields' `env`)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(cls):
        raw = env.get(f.metadata["env"])
        if raw is None:
            continue
        kind: Any = type(f.default)
        try:
            values[f.name] = _bool(raw) if kind is bool else kind(raw)
        except ValueError:
            raise ValueError(
                f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}"
            ) from None
    config = replace(cls(), **values, **overrides)
    config.check()
    return config


def markdown(cls: Any) -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(cls):
        default = f.default if f.default != "" else "(empty)"
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class NotifyConfig:
    """Typed notification settings; build with `NotifyConfig.from_env()`."""

    account_id: str = _setting(
        "",
        "PW_NOTIFY_ACCOUNT_ID",
        "the seller account the notifications are about: the `account_id` of their events (required)",
    )
    seller_accounts: str = _setting(
        "",
        "PW_NOTIFY_SELLER_ACCOUNTS",
        "other accounts on the same queue: `SELLERID=account_id,...` (a notification naming that seller id goes to that account)",
    )
    default_marketplace: str = _setting(
        "",
        "PW_NOTIFY_DEFAULT_MARKETPLACE",
        "site for notifications that name none but whose action needs one (MFN quantity), as a code or marketplace ID (empty: kept as notification.received)",
    )
    sqs_queue_url: str = _setting(
        "",
        "PW_NOTIFY_SQS_QUEUE_URL",
        "the SQS queue Amazon sends to (a standard queue; empty: no SQS reader)",
    )
    sqs_endpoint_url: str = _setting(
        "",
        "PW_SQS_ENDPOINT_URL",
        "SQS endpoint (empty: AWS's for the region; the local ElasticMQ runner listens on this URL's port, default http://127.0.0.1:9324)",
    )
    sqs_region: str = _setting("eu-west-1", "PW_NOTIFY_SQS_REGION", "AWS region of the queue")
    sqs_wait_seconds: int = _setting(
        20,
        "PW_NOTIFY_SQS_WAIT_SECONDS",
        "long polling: seconds a receive waits for messages (1-20)",
    )
    sqs_visibility_seconds: int = _setting(
        60,
        "PW_NOTIFY_SQS_VISIBILITY_SECONDS",
        "a received message stays hidden this long; not deleted by then (Kafka away, a crash), it is delivered again",
    )
    sqs_max_messages: int = _setting(
        10, "PW_NOTIFY_SQS_MAX_MESSAGES", "messages per receive (1-10)"
    )
    store: str = _setting(
        "",
        "PW_NOTIFY_STORE",
        "SQLite file of the notifications already stored (empty: PW_DATA_DIR/notifications.sqlite)",
    )
    seen_days: float = _setting(
        14.0,
        "PW_NOTIFY_SEEN_DAYS",
        "how long a stored notification's identity is remembered, to drop repeats",
    )
    eventbridge_port: int = _setting(
        0,
        "PW_NOTIFY_EVENTBRIDGE_PORT",
        "port of the EventBridge API destination endpoint (0: none); its key is PW_NOTIFY_EVENTBRIDGE_KEY",
    )
    eventbridge_host: str = _setting(
        "127.0.0.1", "PW_NOTIFY_EVENTBRIDGE_HOST", "bind address of the EventBridge endpoint"
    )
    eventbridge_header: str = _setting(
        "x-partnerwatch-key",
        "PW_NOTIFY_EVENTBRIDGE_HEADER",
        "the header that carries the key (the API destination connection's API key name)",
    )
    eventbridge_tls_cert: str = _setting(
        "",
        "PW_NOTIFY_EVENTBRIDGE_TLS_CERT",
        "certificate chain (PEM) to serve HTTPS with (EventBridge calls HTTPS only; empty: terminate TLS in front)",
    )
    eventbridge_tls_key: str = _setting(
        "", "PW_NOTIFY_EVENTBRIDGE_TLS_KEY", "private key (PEM) of PW_NOTIFY_EVENTBRIDGE_TLS_CERT"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> NotifyConfig:
        config: NotifyConfig = from_env(cls, environ, overrides)
        return config

    def check(self) -> None:
        if self.default_marketplace and site_code(self.default_marketplace) is None:
            raise ValueError("PW_NOTIFY_DEFAULT_MARKETPLACE is not a marketplace code or ID")
        if not 1 <= self.sqs_wait_seconds <= 20:
            raise ValueError("PW_NOTIFY_SQS_WAIT_SECONDS must be 1-20")
        if not 1 <= self.sqs_max_messages <= 10:
            raise ValueError("PW_NOTIFY_SQS_MAX_MESSAGES must be 1-10")
        if not 0 <= self.sqs_visibility_seconds <= 43200:
            raise ValueError("PW_NOTIFY_SQS_VISIBILITY_SECONDS must be 0-43200")
        if bool(self.eventbridge_tls_cert) != bool(self.eventbridge_tls_key):
            raise ValueError("PW_NOTIFY_EVENTBRIDGE_TLS_CERT and _TLS_KEY go together")
        self.accounts()

    def accounts(self) -> tuple[tuple[str, str], ...]:
        out = []
        for item in filter(None, (p.strip() for p in self.seller_accounts.split(","))):
            seller, _, account = item.partition("=")
            if not seller.strip() or not account.strip():
                raise ValueError(f"PW_NOTIFY_SELLER_ACCOUNTS: {item!r} is not SELLERID=account_id")
            out.append((seller.strip(), account.strip()))
        return tuple(out)

    @property
    def site(self) -> str | None:
        return site_code(self.default_marketplace) if self.default_marketplace else None

    def store_path(self, data_dir: Path) -> Path:
        return Path(self.store) if self.store else data_dir / "notifications.sqlite"


def markdown_table() -> str:
    return markdown(NotifyConfig)
