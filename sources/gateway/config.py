"""The gateway's settings: `PW_GATEWAY_*` environment variables, typed, in one place.

The rest of PartnerWatch's settings (broker, topic prefix, data folder) come from
`pipeline.config.Settings`; `partnerwatch gateway config --markdown` prints this table.
The seller's own LWA credentials are never settings: they come from a secret file
(`PW_GATEWAY_SELLER_SECRET_FILE`) or from the environment (`lwa.SellerCredentials`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipeline.contract import SEVERITIES
from pipeline.marketplaces import site_code

REGION_HOSTS = {
    "na": "sellingpartnerapi-na.amazon.com",
    "eu": "sellingpartnerapi-eu.amazon.com",
    "fe": "sellingpartnerapi-fe.amazon.com",
}


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class GatewayConfig:
    """Typed gateway settings; build with `GatewayConfig.from_env()`."""

    account_id: str = _setting(
        "",
        "PW_GATEWAY_ACCOUNT_ID",
        "the seller account the gateway acts for: the `account_id` of its events (required)",
    )
    mode: str = _setting(
        "observe",
        "PW_GATEWAY_MODE",
        "observe (record every call) or enforce (also refuse calls outside the principal's grant, before Amazon)",
    )
    host: str = _setting("127.0.0.1", "PW_GATEWAY_HOST", "bind address")
    port: int = _setting(8443, "PW_GATEWAY_PORT", "port")
    tls_cert: str = _setting(
        "",
        "PW_GATEWAY_TLS_CERT",
        "certificate chain (PEM) to serve HTTPS with; empty: plain HTTP (providers' SDKs expect https://: terminate TLS in front then)",
    )
    tls_key: str = _setting("", "PW_GATEWAY_TLS_KEY", "private key (PEM) of PW_GATEWAY_TLS_CERT")
    public_url: str = _setting(
        "",
        "PW_GATEWAY_PUBLIC_URL",
        "the gateway's URL as providers reach it, for document URLs it hands out (empty: https://host:port)",
    )
    region: str = _setting(
        "eu", "PW_GATEWAY_REGION", "SP-API region of the seller's marketplaces: na, eu or fe"
    )
    sandbox: bool = _setting(
        False,
        "PW_GATEWAY_SANDBOX",
        "forward to Amazon's sandbox hosts (sandbox.sellingpartnerapi-*.amazon.com)",
    )
    upstream_url: str = _setting(
        "",
        "PW_GATEWAY_UPSTREAM_URL",
        "SP-API base URL to forward to (empty: the region's endpoint, or its sandbox)",
    )
    upstream_ca_file: str = _setting(
        "",
        "PW_GATEWAY_UPSTREAM_CA_FILE",
        "CA bundle (PEM) to verify the upstream and the LWA endpoint with (empty: the system's)",
    )
    lwa_url: str = _setting(
        "https://api.amazon.com/auth/o2/token",
        "PW_GATEWAY_LWA_URL",
        "Login with Amazon token endpoint for the seller's access token",
    )
    seller_secret_file: str = _setting(
        "",
        "PW_GATEWAY_SELLER_SECRET_FILE",
        "JSON file with the seller app's client_id, client_secret and refresh_token (else PW_GATEWAY_LWA_CLIENT_ID, _CLIENT_SECRET, _REFRESH_TOKEN)",
    )
    store: str = _setting(
        "",
        "PW_GATEWAY_STORE",
        "the gateway's SQLite store: credentials, tokens, suspensions (empty: PW_DATA_DIR/gateway.sqlite)",
    )
    token_ttl: int = _setting(900, "PW_GATEWAY_TOKEN_TTL", "seconds a gateway access token lives")
    record_reads: bool = _setting(
        True,
        "PW_GATEWAY_RECORD_READS",
        "record calls that change nothing as `data.read` events (false: only writes and sensitive calls)",
    )
    provider_rate: float = _setting(
        5.0,
        "PW_GATEWAY_PROVIDER_RATE",
        "enforce: calls per second one provider may make, sustained (all providers share the seller app's SP-API limits)",
    )
    provider_burst: int = _setting(
        20,
        "PW_GATEWAY_PROVIDER_BURST",
        "enforce: calls one provider may make at once above the rate (429 beyond)",
    )
    max_price_change_pct: float = _setting(
        30.0,
        "PW_GATEWAY_MAX_PRICE_CHANGE_PCT",
        "enforce: a price move larger than this needs an approval when the grant sets no max_price_change_pct",
    )
    price_lookup: bool = _setting(
        True,
        "PW_GATEWAY_PRICE_LOOKUP",
        "enforce: read the listing's current price from Amazon when the gateway has not seen it, to measure a price move",
    )
    default_marketplace: str = _setting(
        "",
        "PW_GATEWAY_DEFAULT_MARKETPLACE",
        "site for calls that name none but must (e.g. a payout), as a code or marketplace ID",
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024,
        "PW_GATEWAY_MAX_BODY_BYTES",
        "largest request body (or document upload) accepted",
    )
    ledger_follow: bool = _setting(
        True,
        "PW_GATEWAY_LEDGER_FOLLOW",
        "learn grants, approvals, policy and suspensions from the ledger topic",
    )
    suspend_detectors: str = _setting(
        "",
        "PW_GATEWAY_SUSPEND_DETECTORS",
        "POST /_pw/alerts (an alert route's webhook, signed with PW_GATEWAY_ALERT_SECRET) suspends the alert's provider only for these detectors, comma-separated (empty: any the route sends)",
    )
    suspend_min_severity: str = _setting(
        "high",
        "PW_GATEWAY_SUSPEND_MIN_SEVERITY",
        "POST /_pw/alerts suspends only at this severity or above",
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> GatewayConfig:
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

    def check(self) -> None:
        if self.mode not in ("observe", "enforce"):
            raise ValueError("PW_GATEWAY_MODE must be observe or enforce")
        if self.region not in REGION_HOSTS:
            raise ValueError("PW_GATEWAY_REGION must be na, eu or fe")
        if self.default_marketplace and site_code(self.default_marketplace) is None:
            raise ValueError("PW_GATEWAY_DEFAULT_MARKETPLACE is not a marketplace code or ID")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("PW_GATEWAY_TLS_CERT and PW_GATEWAY_TLS_KEY go together")
        if self.suspend_min_severity not in SEVERITIES:
            raise ValueError(
                f"PW_GATEWAY_SUSPEND_MIN_SEVERITY must be one of {', '.join(SEVERITIES)}"
            )
        if self.token_ttl < 60 or self.provider_rate <= 0 or self.provider_burst < 1:
            raise ValueError(
                "PW_GATEWAY_TOKEN_TTL must be at least 60; the rate and burst positive"
            )

    def suspends_on(self, detector: str, severity: str) -> bool:
        wanted = {d.strip() for d in self.suspend_detectors.split(",") if d.strip()}
        if wanted and detector not in wanted:
            return False
        return severity in SEVERITIES and SEVERITIES.index(severity) >= SEVERITIES.index(
            self.suspend_min_severity
        )

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"

    @property
    def upstream(self) -> str:
        if self.upstream_url:
            return self.upstream_url.rstrip("/")
        host = REGION_HOSTS[self.region]
        return f"https://{'sandbox.' if self.sandbox else ''}{host}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{'https' if self.tls_cert else 'http'}://{self.host}:{self.port}"

    def store_path(self, data_dir: Path) -> Path:
        return Path(self.store) if self.store else data_dir / "gateway.sqlite"


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(GatewayConfig):
        default = f.default if f.default != "" else "(empty)"
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(lines)
