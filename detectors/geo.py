"""Where a source address is: its country and network operator, offline, plus country geometry.

Geography-based detectors (new_country_or_asn, impossible_travel) need to know where an address is
without calling a web service: a detector must decide on the event alone, the same way on every
replay. The data is the MaxMind GeoLite2 Country + ASN snapshot that the geoip2fast wheel ships
(`geoip2fast-asn-ipv6.dat.gz`, IPv4 and IPv6, 4.7 MB; loading takes ~0.3 s and ~110 MB of memory,
once per process, on the first lookup; a lookup then costs ~10 us and is cached). The snapshot
ages: refresh it by upgrading geoip2fast.

That data names an address's operator (`asn_name`, e.g. "Deutsche Telekom AG") but not its AS
number, so `Place.asn` is always None with it; callers key networks by `asn_name`.
Private, reserved, documentation and other non-global addresses resolve to nothing.

`min_distance_km` answers "how far apart must two events be, at the least, if one was in country
A and the other in country B?" from `data/country_centroids.csv`: one point per country and a
reach (the distance from that point within which ~97% of the country's people live, small
remote islands left out). By the triangle inequality, centroid distance minus both reaches is a
lower bound on the real distance, so neighbours of a large country (US/CA/MX, RU and its
neighbours) are never "too far apart", whatever their centroids say.
"""

from __future__ import annotations

import csv
import math
import os
import threading
from functools import cache, lru_cache
from importlib import resources
from typing import Any, NamedTuple

from pipeline.authorization import plain_address

#: geoip2fast's bundled data file with country and ASN, IPv4 and IPv6.
DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
EARTH_RADIUS_KM = 6371.0088

# geoip2fast placeholders meaning "no country" or "no operator".
_NO_COUNTRY = frozenset({"", "--", "EU", "AP", "ASIA"})
_NO_ASN = frozenset({"", "<unknown>", "IANA.ORG"})
# geoip2fast sets these at import time for the whole process; we put them back.
_ENV_TOUCHED = ("PYTHONWARNINGS", "PYTHONIOENCODING")

_lock = threading.Lock()
_reader: Any = None


class Place(NamedTuple):
    country: str | None  # ISO 3166-1 alpha-2 (and XK for Kosovo)
    asn: int | None  # AS number, when the data carries one (geoip2fast's does not)
    asn_name: str | None  # network operator, e.g. "Deutsche Telekom AG"


NOWHERE = Place(None, None, None)


def _load() -> Any:
    """The geoip2fast reader, loaded once per process (its data lives in module globals)."""
    global _reader
    if _reader is None:
        with _lock:
            if _reader is None:
                saved = {name: os.environ.get(name) for name in _ENV_TOUCHED}
                try:
                    import geoip2fast
                    from geoip2fast import GeoIP2Fast
                finally:
                    for name, value in saved.items():
                        if value is None:
                            os.environ.pop(name, None)
                        else:
                            os.environ[name] = value
                # A full path: geoip2fast otherwise looks in the current directory first.
                path = resources.files(geoip2fast) / DATA_FILE
                with resources.as_file(path) as data_file:
                    _reader = GeoIP2Fast(geoip2fast_data_file=str(data_file))
    return _reader


@lru_cache(maxsize=65536)
def lookup(ip: str) -> Place:
    """Country and operator of `ip`; `NOWHERE` for private, reserved or unknown addresses."""
    address = plain_address(ip)
    if address is None or not address.is_global:
        return NOWHERE
    found = _load().lookup(str(address))
    if getattr(found, "is_private", False):
        return NOWHERE
    country = found.country_code if found.country_code not in _NO_COUNTRY else None
    asn_name = found.asn_name.strip() if isinstance(found.asn_name, str) else ""
    return Place(country, None, asn_name if asn_name not in _NO_ASN else None)


class Centroid(NamedTuple):
    lat: float
    lon: float
    reach_km: float  # ~97% of the country's people live within this distance of (lat, lon)


@cache
def centroids() -> dict[str, Centroid]:
    """Country code -> centroid, from `data/country_centroids.csv` (package data)."""
    text = resources.files("detectors").joinpath("data/country_centroids.csv").read_text("utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return {
        row["country"]: Centroid(float(row["lat"]), float(row["lon"]), float(row["reach_km"]))
        for row in rows
    }


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def min_distance_km(a: str, b: str) -> float | None:
    """A lower bound on the distance between a place in country `a` and one in `b`.

    None when either country has no centroid; 0 for the same country or close neighbours.
    """
    table = centroids()
    ca, cb = table.get(a), table.get(b)
    if ca is None or cb is None:
        return None
    if a == b:
        return 0.0
    return max(0.0, haversine_km(ca.lat, ca.lon, cb.lat, cb.lon) - ca.reach_km - cb.reach_km)
