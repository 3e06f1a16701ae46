"""detectors/geo_bundled.py answers as geoip2fast's own reader does, on the same data file.

Both readers load the wheel's bundled file; each sampled network is looked up at its first
address, its last address, one past it and one address inside, plus random addresses of both
families, and the fields geo.py reads (country code, private, ASN name) must be equal.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from detectors import geo
from detectors.geo_bundled import BundledData, Found, load


@pytest.fixture(scope="module")
def readers() -> tuple[BundledData, Any]:
    geo._load()  # imports geoip2fast the way geo.py does (its environment put back)
    import geoip2fast
    from geoip2fast import GeoIP2Fast

    with resources.as_file(resources.files(geoip2fast) / geo.DATA_FILE) as path:
        ours = load(Path(path))
        library = GeoIP2Fast(geoip2fast_data_file=str(path))
    assert ours is not None, "geo_bundled did not read the installed geoip2fast's data"
    return ours, library


def _addresses(ours: BundledData, step: int) -> Iterator[int]:
    rng = random.Random(7)
    for half in (ours.country, ours.asn):
        networks = len(half.netlength)
        for i in range(0, networks, step):
            first = half.first(i)
            last = half.last(i, 32 if first < 2**32 else 128)
            yield from (first, last, last + 1, rng.randint(first, last))
        yield from (half.first(networks - 1), half.first(0))
    for _ in range(5000):
        yield rng.randrange(2**32)
        yield (0x2000 << 112) + rng.randrange(2**125)  # global unicast IPv6


def _library(library: Any, ip: int) -> Found:
    found = library.lookup(library._int2ip(ip))
    return Found(found.country_code, bool(found.is_private), found.asn_name)


def test_the_same_answers_as_geoip2fast(readers: tuple[BundledData, Any]) -> None:
    ours, library = readers
    checked = 0
    for ip in _addresses(ours, step=97):
        assert ours.lookup(ip) == _library(library, ip), library._int2ip(ip)
        checked += 1
    assert checked > 40_000


def test_every_reserved_network_and_every_ipv6_network_longer_than_64_bits(
    readers: tuple[BundledData, Any],
) -> None:
    """The rare cases a sample misses: the reserved networks (name index < 16, where 15 is
    geoip2fast's "not found in database") and IPv6 networks sharing their high 64 bits."""
    ours, library = readers
    checked = 0
    for half in (ours.country, ours.asn):
        n4 = len(half.v4)
        for i in range(len(half.netlength)):
            long_v6 = i >= n4 and half.netlength[i] > 64
            if (half is ours.country and half.ids[i] < 16) or long_v6:
                last = half.last(i, 32 if i < n4 else 128)
                for ip in (half.first(i), last, last + 1):
                    assert ours.lookup(ip) == _library(library, ip), library._int2ip(ip)
                checked += 1
    assert checked > 100


def test_both_families_private_and_not_found_are_covered(
    readers: tuple[BundledData, Any],
) -> None:
    """The comparison above is not vacuous: the sample holds every kind of answer."""
    ours, _ = readers
    answers = [ours.lookup(ip) for ip in _addresses(ours, step=97)]
    assert any(a.is_private for a in answers)
    assert any(a.country_code == "--" and not a.is_private for a in answers)  # not found
    assert any(a.country_code not in ("", "--") and a.asn_name for a in answers)
    assert any(a.country_code not in ("", "--") and not a.asn_name for a in answers)
    assert len(ours.country.v4) and len(ours.country.v6_hi) and len(ours.asn.v6_hi)


def test_an_ipv4_address_past_its_last_asn_network_keeps_geoip2fasts_answer(
    readers: tuple[BundledData, Any],
) -> None:
    """geoip2fast checks an ASN network's end with IPv6 sizes whenever the data holds IPv6, so an
    IPv4 address past the end of the ASN network before it still gets that network's name; the
    arrays answer the same, so that alerts do not change with the reader."""
    ours, library = readers
    asn = ours.asn
    for i in range(len(asn.v4) - 1):
        end = asn.last(i, 32) + 1
        if end < asn.first(i + 1):  # a gap after network i
            answer = _library(library, end)
            if answer.country_code not in ("", "--"):
                assert ours.lookup(end) == answer
                assert answer.asn_name == ours.names_asn[asn.ids[i]]
                return
    pytest.fail("no IPv4 gap between ASN networks inside a country network")


def test_geo_uses_the_arrays(readers: tuple[BundledData, Any]) -> None:
    assert isinstance(geo._load(), BundledData)
    assert geo.lookup("8.8.8.8") == geo.Place("US", None, "GOOGLE")


def test_another_geoip2fast_release_falls_back_to_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geoip2fast.geoip2fast as library

    monkeypatch.setattr(library, "__version__", "9.9.9")
    with resources.as_file(resources.files("geoip2fast") / geo.DATA_FILE) as path:
        assert load(Path(path)) is None
