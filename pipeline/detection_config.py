"""The detectors' settings: thresholds, windows and severities (`Settings.detect`).

Read by pipeline/config.py from `PW_DETECT_<FIELD>`, with `PW_DETECT_SEVERITIES="detector=level,..."`;
`DetectionConfig()` in code gives the defaults. Lives in the core because Settings nests it and
the core imports nothing of ours (detectors/ and streams/ import it from `pipeline.config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from pipeline.contract import SEVERITIES


def setting(default: Any, help: str, *, secret: bool = False, **constraints: Any) -> Any:
    """A setting; a `secret` one is left out of repr() and shown as *** by `redacted()`."""
    extra: dict[str, Any] | None = {"secret": True} if secret else None
    return Field(default, description=help, repr=not secret, json_schema_extra=extra, **constraints)


def is_secret(info: FieldInfo) -> bool:
    return isinstance(info.json_schema_extra, dict) and bool(info.json_schema_extra.get("secret"))


def parse_severities(raw: str) -> dict[str, str]:
    """`"detector=level,..."` -> {detector: level}; an unknown level raises ValueError."""
    out = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, level = item.partition("=")
        if level.strip() not in SEVERITIES or not name.strip():
            raise ValueError(f"{item!r} must be detector=one of {', '.join(SEVERITIES)}")
        out[name.strip()] = level.strip()
    return out


class DetectionConfig(BaseModel):
    """Thresholds, windows and severities of the detectors (`Settings.detect`, `PW_DETECT_<FIELD>`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suppression_minutes: int = setting(
        60, "repeats of one detector and key inside this window update one alert"
    )
    max_price_change_pct: float = setting(
        30.0, "price move needing an approval when the grant sets no max_price_change_pct"
    )
    bulk_window_minutes: int = setting(
        10, "window for counting distinct SKUs a principal edits or deletes"
    )
    bulk_min_skus: int = setting(40, "distinct SKUs in the window before a burst can fire")
    bulk_baseline_factor: float = setting(
        3.0, "a burst is this many times the principal's usual window"
    )
    takeover_window_hours: int = setting(
        72, "contact or bank change followed by payout or schedule change within this"
    )
    refund_window_minutes: int = setting(60, "window for counting refunds on an account")
    refund_min: int = setting(10, "refunds in the window before a burst can fire")
    refund_baseline_factor: float = setting(
        3.0, "a refund burst is this many times the account's usual window"
    )
    ip_churn_per_hour: int = setting(
        5, "distinct source IPs of one principal in an hour before churn fires"
    )
    travel_max_kmh: float = setting(
        1000.0, "faster than this between two countries is impossible travel"
    )
    rate_limit_per_min: int = setting(
        20, "requests per minute per provider per account (policy rate_limit_per_min overrides)"
    )
    rate_sustained_factor: float = setting(
        3.0, "an hour this many times the provider's usual hour is sustained abuse"
    )
    report_downloads_min: int = setting(
        20, "report downloads per hour before the volume rule can fire"
    )
    report_baseline_factor: float = setting(
        5.0, "report downloads this many times the principal's usual hour"
    )
    failed_writes_window_minutes: int = setting(
        15, "window for failed or denied provider writes on an account"
    )
    failed_writes_min: int = setting(
        10, "failed or denied writes in the window before the sync rule can fire"
    )
    tax_grace_days: int = setting(0, "days after the due day before a missing filing fires")
    rate_sustained_min: int = setting(
        120, "requests in an hour before the sustained-rate rule can fire"
    )
    outside_gateway_window_minutes: int = setting(
        60,
        "change_outside_gateway: a gateway call this long before an observed change explains it",
        gt=0,
    )
    outside_gateway_skew_minutes: int = setting(
        5, "change_outside_gateway: ... or this long after it (clocks differ)", ge=0
    )
    outside_gateway_grace_minutes: int = setting(
        0,
        "change_outside_gateway: hold an unexplained change until an event this much later (gateway events that reach the ledger late); 0: decide at once",
        ge=0,
    )
    outside_gateway_late_hours: int = setting(
        24,
        "change_outside_gateway: gateway calls are remembered this long, so an observation this late is still matched",
        gt=0,
    )
    outside_gateway_ignore_quantity_decrease: bool = setting(
        True, "change_outside_gateway: a lower quantity is sales, not a change to reconcile"
    )
    outside_gateway_id_days: int = setting(
        7,
        "change_outside_gateway: how long feed, report and payout ids the gateway saw are remembered",
        gt=0,
    )
    # -- provider-wide rules (detectors/provider_wide/) and the rules that learn from history --
    spray_window_minutes: int = setting(
        10, "cross_account_spray: window for one principal's accounts reached from a new network"
    )
    spray_min_accounts: int = setting(
        4, "cross_account_spray: accounts in the window before it can fire"
    )
    spray_baseline_factor: float = setting(
        2.0, "cross_account_spray: and this many times the principal's usual accounts per window"
    )
    price_cut_window_minutes: int = setting(
        60, "cross_account_price_cuts: window for one provider's price cuts across accounts"
    )
    price_cut_min_pct: float = setting(
        10.0, "cross_account_price_cuts: a price lowered by at least this percent is a cut"
    )
    price_cut_min_accounts: int = setting(
        3, "cross_account_price_cuts: accounts cut in the window before it can fire"
    )
    price_cut_baseline_factor: float = setting(
        2.0,
        "cross_account_price_cuts: and this many times the provider's usual busy hour of accounts cut",
    )
    exfil_days: int = setting(
        3,
        "low_and_slow_exfiltration: days of sensitive report downloads summed against the baseline",
    )
    exfil_history_days: int = setting(
        7, "low_and_slow_exfiltration: days of a provider's history before it has a baseline"
    )
    exfil_min_reports: int = setting(
        30, "low_and_slow_exfiltration: downloads over the days before it can fire"
    )
    exfil_baseline_factor: float = setting(
        3.0, "low_and_slow_exfiltration: and this many times the provider's usual days"
    )
    dormant_days: int = setting(
        21, "dormant_reactivation: idle days after which a principal counts as dormant"
    )
    dormant_gap_factor: float = setting(
        3.0, "dormant_reactivation: and this many times the principal's longest earlier idle gap"
    )
    grant_abuse_window_minutes: int = setting(
        30,
        "grant_then_abuse: minutes after a widening grant in which heavy use of the new access fires",
    )
    grant_abuse_min_uses: int = setting(
        20, "grant_then_abuse: uses of the newly granted access in the window before it fires"
    )
    approver_min_history: int = setting(
        2,
        "grant_then_abuse: authorization events by known approvers before a new approver is unexpected",
    )
    session_overlap_minutes: int = setting(
        5, "concurrent_sessions: one session id from two places within this is concurrent"
    )
    session_min_km: float = setting(
        1000.0, "concurrent_sessions: the two places at least this far apart (lower bound)"
    )
    # NoDecode: the variable is `detector=level,...`, not JSON.
    severities: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="severity overrides, `detector=level,...`"
    )

    @field_validator("severities", mode="before")
    @classmethod
    def _severities(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_severities(value)
        if isinstance(value, Mapping):
            return parse_severities(",".join(f"{k}={v}" for k, v in value.items()))
        return value

    def severity(self, detector: str, default: str) -> str:
        return self.severities.get(detector, default)
