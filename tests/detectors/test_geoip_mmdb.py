"""GeoIP data with AS numbers: an operator's mmdb (PW_GEOIP_CITY_DB, PW_GEOIP_ASN_DB) is read with
maxminddb, so new_country_or_asn's network half works by AS number; its build date is in
/v1/health, with a warning once it is old. The mmdb files are written here, with mmdb-writer,
in MaxMind's GeoLite2 record layout, for networks of our choosing."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import netaddr
import orjson
import pytest

from detectors import Context, geo
from detectors.rules import new_country_or_asn as rule
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, normalize

mmdb_writer = pytest.importorskip(
    "mmdb_writer", reason="the dev extra's mmdb-writer is not installed"
)

START = 1_793_606_400_000  # 2026-11-02T08:00:00Z
OFFICE, HOSTING = (
    "91.40.249",
    "91.40.250",
)  # one /24 each, both in Germany (both Deutsche Telekom in the bundled data)


def write_mmdb(
    path: Path, database_type: str, networks: dict[str, dict[str, Any]], built: float | None = None
) -> Path:
    writer = mmdb_writer.MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description="PartnerWatch test data",
        int_type="u32",
    )
    for cidr, record in networks.items():
        writer.insert_network(netaddr.IPSet([cidr]), record)
    if built is None:
        writer.to_db_file(str(path))
    else:  # the build date goes into the metadata from time.time()
        real = mmdb_writer.time

        class Clock:
            @staticmethod
            def time() -> float:
                return built

        mmdb_writer.time = Clock  # type: ignore[assignment]
        try:
            writer.to_db_file(str(path))
        finally:
            mmdb_writer.time = real
    return path


def asn_db(path: Path, built: float | None = None) -> Path:
    return write_mmdb(
        path,
        "GeoLite2-ASN",
        {
            f"{OFFICE}.0/24": {
                "autonomous_system_number": 64501,
                "autonomous_system_organization": "Example Office Net",
            },
            f"{HOSTING}.0/24": {
                "autonomous_system_number": 64502,
                "autonomous_system_organization": "Example Hosting",
            },
            "91.40.251.0/24": {
                "autonomous_system_number": 3320,
                "autonomous_system_organization": "Deutsche Telekom AG",
            },
        },
        built,
    )


def city_db(path: Path, built: float | None = None) -> Path:
    return write_mmdb(
        path,
        "GeoLite2-City",
        {
            "91.40.0.0/16": {
                "country": {"iso_code": "DE", "names": {"en": "Germany"}},
                "city": {"names": {"en": "Berlin"}},
            },
            "77.88.0.0/16": {"registered_country": {"iso_code": "RU"}},
        },
        built,
    )


@pytest.fixture(autouse=True)
def bundled_afterwards() -> Iterator[None]:
    yield
    geo.reset()


def event(n: int, ip: str, at: int) -> Event:
    return normalize(
        {
            "event_id": f"e-{n}",
            "occurred_at": format_ms(at),
            "account_id": "A0001SELLER",
            "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"},
            "action": "report.download",
            "source": {"ip": ip},
        }
    )


def findings(events: list[Event], state: dict[str, Any] | None = None) -> list[Any]:
    ctx = Context(auth={"grants": {}}, config=DetectionConfig())
    state = {} if state is None else state
    return [f for e in events for f in rule.detect(e, state, ctx)]


def office_baseline(n: int = 20) -> list[Event]:
    return [event(i, f"{OFFICE}.{10 + i}", START + i * 60_000) for i in range(n)]


def test_lookup_reads_country_and_as_number_from_the_mmdb(tmp_path: Path) -> None:
    geo.configure(str(city_db(tmp_path / "city.mmdb")), str(asn_db(tmp_path / "asn.mmdb")))
    assert geo.lookup(f"{OFFICE}.7") == geo.Place("DE", 64501, "Example Office Net")
    assert geo.lookup(f"{HOSTING}.7") == geo.Place("DE", 64502, "Example Hosting")
    assert geo.lookup("77.88.1.1") == geo.Place(
        "RU", None, None
    )  # registered country only; no ASN record
    assert geo.lookup("10.1.2.3") == geo.NOWHERE
    geo.configure()  # back to the bundled data: operator names, no numbers
    bundled = geo.lookup(f"{HOSTING}.7")
    assert bundled.country == "DE" and bundled.asn is None and bundled.asn_name


def test_the_asn_half_fires_with_as_numbers(tmp_path: Path) -> None:
    events = [*office_baseline(), event(99, f"{HOSTING}.5", START + 3_600_000)]
    # the bundled data sees one operator (Deutsche Telekom) and one country: nothing to report
    geo.configure()
    assert findings(events) == []
    # with AS numbers the move to another network is seen
    geo.configure(str(city_db(tmp_path / "city.mmdb")), str(asn_db(tmp_path / "asn.mmdb")))
    [finding] = findings(events)
    assert finding.detector == "new_country_or_asn"
    assert "new network AS64502 Example Hosting" in finding.title
    assert "DE (AS64502 Example Hosting)" in finding.summary


def test_switching_from_names_to_numbers_does_not_make_known_operators_new(tmp_path: Path) -> None:
    state: dict[str, Any] = {}
    telekom = [event(i, f"91.40.251.{10 + i}", START + i * 60_000) for i in range(20)]
    geo.configure()
    assert findings(telekom, state) == []  # learned as "Deutsche Telekom AG" (a name)
    geo.configure(str(city_db(tmp_path / "city.mmdb")), str(asn_db(tmp_path / "asn.mmdb")))
    later = START + 3_600_000
    assert (
        findings([event(50, "91.40.251.77", later)], state) == []
    )  # AS3320, same operator name: known
    [finding] = findings([event(51, f"{HOSTING}.9", later + 60_000)], state)
    assert "AS64502" in finding.title


def test_data_dates_and_the_staleness_warning(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    old = time.time() - 90 * 86_400
    geo.configure(
        str(city_db(tmp_path / "city.mmdb")), str(asn_db(tmp_path / "asn.mmdb", built=old))
    )
    shown = geo.staleness(60, today)
    assert (
        shown["country"]["database_type"] == "GeoLite2-City" and shown["country"]["age_days"] == 0
    )
    assert (
        shown["asn"]["built"] == (today - timedelta(days=90)).isoformat()
        and shown["asn"]["asn_numbers"] is True
    )
    assert shown["warning"].startswith("geoip asn data is 90 days old (over 60)")
    assert "note" not in shown
    geo.configure(str(city_db(tmp_path / "city2.mmdb")), str(asn_db(tmp_path / "asn2.mmdb")))
    assert "warning" not in geo.staleness(60, today)
    # the bundled data: June 2024, no AS numbers
    geo.configure()
    bundled = geo.staleness(60, today)
    assert bundled["country"]["built"] == "2024-06-18" and bundled["asn"]["asn_numbers"] is False
    assert "GeoLite2 EULA" in bundled["country"]["source"]
    assert "country data is" in bundled["warning"] and "no AS numbers" in bundled["note"]
    assert "warning" not in geo.staleness(10_000, date(2024, 7, 1))


def test_a_file_that_is_not_an_mmdb_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "asn.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(ValueError, match="PW_GEOIP_ASN_DB"):
        geo.configure("", str(bad))
    with pytest.raises(ValueError, match="PW_GEOIP_CITY_DB"):
        geo.configure(str(tmp_path / "missing.mmdb"), "")


@pytest.mark.integration
def test_worker_uses_the_mmdb_and_health_shows_its_date(kafka_broker: str, tmp_path: Path) -> None:
    from partnerwatch.local_worker import Namespace, Worker, wait_for

    city = city_db(tmp_path / "city.mmdb")
    asn = asn_db(tmp_path / "asn.mmdb", built=time.time() - 61 * 86_400)
    ns = Namespace(tmp_path, extra_env={"PW_GEOIP_CITY_DB": str(city), "PW_GEOIP_ASN_DB": str(asn)})
    worker = Worker(ns).start()
    try:
        raw = [
            {
                "event_id": f"geo-{i}",
                "occurred_at": format_ms(START + i * 60_000),
                "account_id": "A-GEO",
                "actor": {"type": "provider", "provider_id": "prov-1", "principal_id": "p1"},
                "action": "report.download",
                "source": {"ip": f"{OFFICE}.{10 + i}"},
            }
            for i in range(20)
        ]
        raw.append(
            {
                **raw[0],
                "event_id": "geo-hosting",
                "occurred_at": format_ms(START + 3_600_000),
                "source": {"ip": f"{HOSTING}.5"},
            }
        )
        ns.send(raw)
        alerts = [
            orjson.loads(r.value)
            for r in ns.read_topic(ns.settings.alerts_topic, expect=1, timeout=90)
        ]
        mine = [a for a in alerts if a["detector"] == "new_country_or_asn"]
        assert len(mine) == 1 and "AS64502" in mine[0]["title"], alerts
        with urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/v1/health", timeout=10) as r:
            health = orjson.loads(r.read())
        assert (
            health["geoip"]["asn"]["source"] == str(asn)
            and health["geoip"]["asn"]["age_days"] == 61
        )
        assert health["geoip"]["country"]["age_days"] == 0
        assert "asn data is 61 days old" in health["geoip"]["warning"]
        wait_for(lambda: worker.alive(), 5, "the worker")
    finally:
        worker.stop()
