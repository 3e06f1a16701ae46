"""The alert id formula, pinned with values computed outside Python.

docs/contract.md and docs/detectors.md: an alert's id is the first 32 hex characters (128 bits)
of `sha256(detector|key|window)`. The expected ids below were computed with coreutils:

    printf '%s' 'impossible_travel|A0001SELLER|p1|2026-11-02T08:00:00.000Z' | sha256sum | cut -c1-32
"""

from __future__ import annotations

from detectors.run import new_state, observe
from pipeline.alert import alert_id, fold
from pipeline.config import DetectionConfig
from pipeline.event import normalize


def test_alert_id_is_the_first_32_hex_characters_of_sha256() -> None:
    got = alert_id("impossible_travel", "A0001SELLER|p1", "2026-11-02T08:00:00.000Z")
    assert got == "d355dd16360a5de767c2841e876ff8ed"


def test_an_alert_raised_by_a_detector_carries_that_id() -> None:
    """detector provider_without_grant, key account|provider|principal, window the event's hour."""
    event = normalize(
        {
            "event_id": "ev-1",
            "occurred_at": "2026-11-02T08:10:00Z",
            "account_id": "A0001SELLER",
            "action": "report.download",
            "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"},
        }
    )
    (finding,) = [
        f
        for f in observe(new_state(), event, DetectionConfig())
        if f.detector == "provider_without_grant"
    ]
    alert = fold(None, finding, event, seq=1)
    # printf '%s' 'provider_without_grant|A0001SELLER|prov-1|p1|2026-11-02T08:00:00.000Z' | sha256sum | cut -c1-32
    assert alert["alert_id"] == "cebfd8ab42193544cf27bdcb50b18a88"
