"""A real embedded warehouse (chDB) holding a simulated stream with attacks, plus a hand-written
scene of grant changes (revoke, narrower re-grant, expiry) and IPv6 sources, stored the way the
loader stores them (sinks.audit_store), with the alerts the detectors raise on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.event import format_ms, timestamp_ms
from pipeline.simulation.traffic import ATTACKS, generate
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import detected_alerts, sequence

ACCOUNT = "A0000SELLER"
MINUTE = 60_000
HOUR = 3_600_000


@dataclass
class Seeded:
    warehouse: EmbeddedWarehouse
    path: Path
    entries: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    scene_start: int  # epoch ms where the hand-written scene begins
    provider: str  # the scene's provider on ACCOUNT
    principals: list[str]  # its principals

    def of(self, account: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["account_id"] == account]


def grant_scene(stream: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, str, list[str]]:
    """Events after the simulated stream on ACCOUNT: a revoke, a narrower re-grant that expires,
    actions inside and outside it, a provider trying to re-grant itself, IPv6 sources, payouts."""
    grant = next(
        e for e in stream if e["account_id"] == ACCOUNT and e["action"] == "permission.grant"
    )["grant"]
    provider, principals = grant["provider_id"], list(grant["principals"])
    start = max(timestamp_ms(e["occurred_at"], "t") for e in stream) + HOUR
    seller = {"type": "seller", "principal_id": f"{ACCOUNT}-owner"}

    def actor(i: int) -> dict[str, str]:
        return {"type": "provider", "provider_id": provider, "principal_id": principals[i]}

    def ev(n: int, at: int, action: str, who: dict[str, str], **fields: Any) -> dict[str, Any]:
        return {
            "event_id": f"scene-{n:03d}",
            "occurred_at": format_ms(start + at),
            "account_id": ACCOUNT,
            "actor": who,
            "action": action,
            **fields,
        }

    def edit(n: int, at: int, who: int, site: str, ip: str = "91.64.1.1") -> dict[str, Any]:
        return ev(
            n,
            at,
            "listing.update",
            actor(who),
            marketplace=site,
            resource={"type": "listing", "id": "SKU-SCENE-1"},
            source={"ip": ip},
        )

    site = grant["marketplaces"][0]
    other = next(s for s in ("JP", "MX", "BR", "AU") if s not in grant["marketplaces"])
    narrow = {
        "grant_id": grant["grant_id"],
        "provider_id": provider,
        "principals": [principals[0]],
        "scopes": ["listing.*"],
        "marketplaces": [site],
        "valid_until": format_ms(start + 2 * HOUR),
    }
    events = [
        ev(
            1,
            0,
            "permission.revoke",
            seller,
            grant={"grant_id": grant["grant_id"], "provider_id": provider},
        ),
        edit(2, MINUTE, 0, site),  # revoked: no live grant
        ev(3, 2 * MINUTE, "permission.grant", seller, grant=narrow),
        edit(4, 3 * MINUTE, 1, site),  # principal not named: no live grant
        edit(5, 4 * MINUTE, 0, site, "2001:db8:77::5"),  # allowed
        edit(6, 5 * MINUTE, 0, other, "::ffff:91.64.1.9"),  # live grant, site outside it
        ev(
            7,
            6 * MINUTE,
            "report.download",
            actor(0),
            resource={"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"},
            source={"ip": "2001:db8:77::6"},
        ),  # live grant, action outside its scopes
        ev(
            8,
            7 * MINUTE,
            "permission.grant",
            actor(0),  # a provider cannot widen its own access
            grant={
                **narrow,
                "principals": principals,
                "scopes": ["*"],
                "valid_until": format_ms(start + 90 * 24 * HOUR),
            },
        ),
        edit(9, 8 * MINUTE, 1, site),  # still not named
        edit(10, 3 * HOUR, 0, site),  # expired
        ev(
            11,
            3 * HOUR + MINUTE,
            "funds.disbursement_request",
            seller,
            marketplace=site,
            amount={"value": "1234.50", "currency": "EUR"},
            source={"ip": "2001:db8:1::1"},
        ),
        ev(
            12,
            3 * HOUR + 2 * MINUTE,
            "funds.bank_account_change",
            actor(0),
            marketplace=site,
            source={"ip": "91.64.1.1"},
        ),
        ev(
            13,
            3 * HOUR + 3 * MINUTE,
            "listing.price_change",
            seller,
            marketplace=site,
            resource={"type": "listing", "id": "SKU-SCENE-1"},
            changes=[{"field": "price", "old": "20.00", "new": "15.00"}],
        ),
    ]
    return events, start, provider, principals


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """~2,000 simulated events on 2 accounts (every attack kind) and the grant scene, stored."""
    stream = [
        e
        for e, _ in generate(
            2000, seed=23, accounts=2, providers=3, attack_rate=0.01, attack_kinds=ATTACKS
        )
    ]
    scene, start, provider, principals = grant_scene(stream)
    entries = sequence(stream + scene)
    path = tmp_path_factory.mktemp("forensics") / "warehouse"
    wh = EmbeddedWarehouse(path)
    migrate(wh, Settings.from_env({}))
    # Stored in two batches, the second one repeated: the loader's redelivery after a crash.
    half = len(entries) // 2
    store_events(wh, entries[:half])
    store_events(wh, entries[half - 100 :])
    store_events(wh, entries[half - 100 :])
    alerts = detected_alerts(entries)
    store_alerts(wh, alerts)
    try:
        yield Seeded(wh, path, entries, alerts, start, provider, principals)
    finally:
        wh.close()
