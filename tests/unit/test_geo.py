"""The offline geoip wrapper and the country geometry the travel rule relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from detectors import geo
from pipeline.config import REPO_ROOT


@pytest.mark.parametrize(
    ("ip", "country", "operator"),
    [
        ("91.40.249.39", "DE", "Deutsche Telekom AG"),
        ("2003::1", "DE", "Deutsche Telekom AG"),
        ("77.88.55.60", "RU", "YANDEX LLC"),
        ("113.160.10.10", "VN", "VNPT Corp"),
        ("2001:268:9000::1", "JP", "KDDI CORPORATION"),
        ("::ffff:91.40.249.39", "DE", "Deutsche Telekom AG"),  # IPv4-mapped IPv6
    ],
)
def test_known_public_addresses(ip: str, country: str, operator: str) -> None:
    assert geo.lookup(ip) == geo.Place(country, None, operator)


@pytest.mark.parametrize(
    "ip",
    [
        "10.1.2.3",
        "192.168.0.1",
        "172.16.5.4",
        "127.0.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.1.1",
        "203.0.113.50",  # documentation (TEST-NET-3)
        "2001:db8::1",  # documentation
        "fd00::1",  # unique local
        "::1",
        "not-an-ip",
        "",
    ],
)
def test_private_reserved_and_invalid_addresses_are_nowhere(ip: str) -> None:
    assert geo.lookup(ip) == geo.NOWHERE
    assert geo.lookup(ip).country is None


def test_loading_leaves_the_process_environment_alone() -> None:
    # geoip2fast sets PYTHONWARNINGS and PYTHONIOENCODING on import; a fresh interpreter shows
    # whether the wrapper puts them back.
    code = (
        "import os; from detectors import geo; assert geo.lookup('8.8.8.8').country == 'US';"
        " print(os.environ.get('PYTHONWARNINGS'), os.environ.get('PYTHONIOENCODING'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONIOENCODING")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["None", "None"]


def test_every_country_the_data_can_return_has_a_centroid() -> None:
    from detectors.geo_bundled import BundledData

    data = geo._load()  # the bundled data, in arrays (detectors/geo_bundled.py)
    assert isinstance(data, BundledData)
    codes = set(data.names_country[16:]) - {"EU", "AP", "ASIA"}
    assert len(codes) > 200
    assert codes <= set(geo.centroids())


@pytest.mark.parametrize(
    ("country", "lat", "lon"),
    [
        ("DE", 52.52, 13.40),  # capitals lie within the country's reach
        ("US", 38.90, -77.04),
        ("RU", 55.75, 37.62),
        ("CN", 39.90, 116.40),
        ("JP", 35.68, 139.69),
        ("BR", -15.79, -47.88),
        ("AU", -35.28, 149.13),
        ("IN", 28.61, 77.21),
        ("VN", 21.03, 105.85),
        ("GB", 51.51, -0.13),
        ("RU", 54.71, 20.51),  # Kaliningrad
        ("ES", 28.12, -15.43),  # Las Palmas
    ],
)
def test_places_lie_within_reach(country: str, lat: float, lon: float) -> None:
    c = geo.centroids()[country]
    assert geo.haversine_km(c.lat, c.lon, lat, lon) <= c.reach_km


@pytest.mark.parametrize(
    ("a", "b", "city_a", "city_b"),
    [
        ("DE", "FR", (52.52, 13.40), (48.86, 2.35)),
        ("US", "CA", (47.61, -122.33), (49.28, -123.12)),  # Seattle, Vancouver
        ("US", "MX", (32.72, -117.16), (32.51, -117.04)),  # San Diego, Tijuana
        ("RU", "DE", (54.71, 20.51), (52.52, 13.40)),  # Kaliningrad, Berlin
        ("DE", "US", (50.11, 8.68), (40.71, -74.01)),  # Frankfurt, New York
        ("GB", "BR", (51.51, -0.13), (-23.55, -46.63)),
        ("VN", "CN", (22.50, 103.95), (22.50, 103.97)),  # Lao Cai, Hekou
    ],
)
def test_min_distance_never_exceeds_a_real_trip(
    a: str, b: str, city_a: tuple[float, float], city_b: tuple[float, float]
) -> None:
    bound = geo.min_distance_km(a, b)
    assert bound is not None
    assert bound <= geo.haversine_km(*city_a, *city_b)


def test_min_distance_of_far_countries_and_unknowns() -> None:
    assert geo.min_distance_km("DE", "VN") == pytest.approx(7800, rel=0.05)
    assert geo.min_distance_km("DE", "DE") == 0.0
    assert geo.min_distance_km("DE", "ZZ") is None


def test_haversine() -> None:
    assert geo.haversine_km(0, 0, 0, 1) == pytest.approx(111.2, abs=0.1)
    assert geo.haversine_km(51.51, -0.13, 40.71, -74.01) == pytest.approx(5570, rel=0.01)


def test_the_bundled_reader_loads_once_when_threads_race_for_it() -> None:
    # The worker's ingest and its provider stage (a thread of its own) both look addresses up;
    # the first lookups of each may race to load the reader. Compiled with mypyc, the
    # double-checked load once failed in the thread that waited ("None object expected").
    saved = geo._reader
    geo._reader = None
    results: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        try:
            results.append(geo._load())
        except BaseException as exc:  # collected: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert len(results) == 8 and all(r is results[0] for r in results)
        assert results[0] is not None
    finally:
        geo._reader = saved if saved is not None else geo._reader
