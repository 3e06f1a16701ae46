"""Thresholds, windows and severities of the detectors: one typed configuration.

Every field can be set with an environment variable `PW_DETECT_<FIELD>` (upper case);
`PW_DETECT_SEVERITIES="detector=level,..."` overrides default severities. The detector
table in docs/detectors.md is generated from this class (`partnerwatch config --detectors --markdown`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.contract import SEVERITIES


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DetectionConfig:
    suppression_minutes: int = _knob(60, "repeats of one detector and key inside this window update one alert")
    max_price_change_pct: float = _knob(30.0, "price move needing an approval when the grant sets no max_price_change_pct")
    bulk_window_minutes: int = _knob(10, "window for counting distinct SKUs a principal edits or deletes")
    bulk_min_skus: int = _knob(40, "distinct SKUs in the window before a burst can fire")
    bulk_baseline_factor: float = _knob(3.0, "a burst is this many times the principal's usual window")
    takeover_window_hours: int = _knob(72, "contact or bank change followed by payout or schedule change within this")
    refund_window_minutes: int = _knob(60, "window for counting refunds on an account")
    refund_min: int = _knob(10, "refunds in the window before a burst can fire")
    refund_baseline_factor: float = _knob(3.0, "a refund burst is this many times the account's usual window")
    ip_churn_per_hour: int = _knob(5, "distinct source IPs of one principal in an hour before churn fires")
    travel_max_kmh: float = _knob(1000.0, "faster than this between two countries is impossible travel")
    rate_limit_per_min: int = _knob(20, "requests per minute per provider per account (policy rate_limit_per_min overrides)")
    rate_sustained_factor: float = _knob(3.0, "an hour this many times the provider's usual hour is sustained abuse")
    report_downloads_min: int = _knob(20, "report downloads per hour before the volume rule can fire")
    report_baseline_factor: float = _knob(5.0, "report downloads this many times the principal's usual hour")
    failed_writes_window_minutes: int = _knob(15, "window for failed or denied provider writes on an account")
    failed_writes_min: int = _knob(10, "failed or denied writes in the window before the sync rule can fire")
    tax_grace_days: int = _knob(0, "days after the due day before a missing filing fires")
    rate_sustained_min: int = _knob(120, "requests in an hour before the sustained-rate rule can fire")
    severities: dict[str, str] = field(default_factory=dict, metadata={"help": "detector=level overrides"})

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DetectionConfig:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"PW_DETECT_{f.name.upper()}")
            if raw is None:
                continue
            if f.name == "severities":
                values[f.name] = _parse_severities(raw)
                continue
            kind: Any = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"PW_DETECT_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        return replace(cls(), **values)

    def severity(self, detector: str, default: str) -> str:
        return self.severities.get(detector, default)


def _parse_severities(raw: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, _, level = item.partition("=")
        if level not in SEVERITIES:
            raise ValueError(f"PW_DETECT_SEVERITIES: {item!r} must be detector=one of {', '.join(SEVERITIES)}")
        out[name.strip()] = level
    return out


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(DetectionConfig):
        if f.name == "severities":
            lines.append("| `PW_DETECT_SEVERITIES` | (empty) | severity overrides, `detector=level,...` |")
            continue
        lines.append(f"| `PW_DETECT_{f.name.upper()}` | `{f.default}` | {f.metadata['help']} |")
    return "\n".join(lines)
