"""Alerts as the detect agent publishes them (pipeline.alert.fold), for the feed tests."""

from __future__ import annotations

from typing import Any

from pipeline.alert import alert_id


def sample_alert(
    account: str = "A-1001",
    severity: str = "high",
    detector: str = "ip_outside_allowlist",
    count: int = 1,
    window: str = "w1",
    evidence: int = 1,
) -> dict[str, Any]:
    return {
        "alert_id": alert_id(detector, f"{account}|P-7", window),
        "detector": detector,
        "severity": severity,
        "account_id": account,
        "provider_id": "P-7",
        "principal_id": "agent-3",
        "title": "Provider P-7 acted from 203.0.113.9, outside its IP allowlist",
        "summary": "listing.price_change on SKU-1 from 203.0.113.9 (DE); grant g-1 allows 198.51.100.0/24 only",
        "evidence_event_ids": [f"ev-{account}-{i}" for i in range(evidence)],
        "first_seen": "2026-11-20T10:00:00.000Z",
        "last_seen": "2026-11-20T10:05:30.250Z",
        "count": count,
        "response": ["Suspend the provider's API credentials", "Review the grant's IP allowlist"],
        "last_seq": 42,
    }
