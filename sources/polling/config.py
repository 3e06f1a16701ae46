"""Settings of the poller: `PW_POLL_*`; the seller app, account and upstream are the gateway's.

The poller reads Amazon with the same seller app the gateway uses (`PW_GATEWAY_SELLER_SECRET_FILE`
or `PW_GATEWAY_LWA_*`, `PW_GATEWAY_ACCOUNT_ID`, `PW_GATEWAY_REGION` / `_UPSTREAM_URL`,
`_LWA_URL`, `_UPSTREAM_CA_FILE`); these are its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.marketplaces import site_code
from sources.notifications.config import from_env, markdown

#: Stores where getPaymentMethods answers (Transfers API 2024-06-01).
PAYMENT_METHOD_SITES = frozenset({"DE", "FR", "IT", "ES", "SE", "NL", "PL", "BE"})


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class PollConfig:
    seller_id: str = _setting(
        "",
        "PW_POLL_SELLER_ID",
        "the seller's merchant id (the `sellerId` of Listings API paths; required)",
    )
    marketplaces: str = _setting(
        "",
        "PW_POLL_MARKETPLACES",
        "sites to poll, comma-separated codes or marketplace IDs (empty: PW_GATEWAY_DEFAULT_MARKETPLACE)",
    )
    interval_seconds: float = _setting(
        300.0, "PW_POLL_INTERVAL_SECONDS", "seconds between the starts of two polls of an account"
    )
    overlap_seconds: float = _setting(
        300.0,
        "PW_POLL_OVERLAP_SECONDS",
        "lastUpdatedAfter goes back this much before the last poll (clocks, late updates)",
    )
    payouts_days: int = _setting(
        30, "PW_POLL_PAYOUTS_DAYS", "listPayouts looks back this many days"
    )
    transactions_days: int = _setting(
        2,
        "PW_POLL_TRANSACTIONS_DAYS",
        "listTransactions looks back this many days on the first poll",
    )
    listings: bool = _setting(
        True, "PW_POLL_LISTINGS", "poll listings (searchListingsItems, getListingsItem)"
    )
    payment_methods: bool = _setting(
        True, "PW_POLL_PAYMENT_METHODS", "poll getPaymentMethods (bank accounts; EU stores only)"
    )
    funds: bool = _setting(True, "PW_POLL_FUNDS", "poll listPayouts and listTransactions")
    store: str = _setting(
        "", "PW_POLL_STORE", "SQLite file of the snapshots (empty: PW_DATA_DIR/polling.sqlite)"
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> PollConfig:
        config: PollConfig = from_env(cls, environ, overrides)
        return config

    def check(self) -> None:
        if self.interval_seconds < 1 or self.overlap_seconds < 0:
            raise ValueError(
                "PW_POLL_INTERVAL_SECONDS must be at least 1 and the overlap not negative"
            )
        bad = [m for m in self.sites_named() if site_code(m) is None]
        if bad:
            raise ValueError(f"PW_POLL_MARKETPLACES: not a marketplace: {', '.join(bad)}")

    def sites_named(self) -> list[str]:
        return [m.strip() for m in self.marketplaces.split(",") if m.strip()]

    def sites(self, default: str = "") -> list[str]:
        named = self.sites_named() or ([default] if default else [])
        return [s for s in (site_code(m) for m in named) if s is not None]

    def store_path(self, data_dir: Path) -> Path:
        return Path(self.store) if self.store else data_dir / "polling.sqlite"


def markdown_table() -> str:
    return markdown(PollConfig)
