"""Where a source address is: its country and network operator (AS number and name), offline,
plus country geometry.

Geography-based detectors (new_country_or_asn, impossible_travel) need to know where an address is
without calling a web service: a detector must decide on the event alone, the same way on every
replay with the same data. Two sources, per half:

- an MMDB file the operator keeps current (read with `maxminddb`): `PW_GEOIP_CITY_DB` for the
  country (MaxMind GeoLite2/GeoIP2 City or Country, DB-IP City/Country Lite) and
  `PW_GEOIP_ASN_DB` for the network (MaxMind GeoLite2/GeoIP2 ASN, DB-IP ASN Lite): these give the
  AS number as well as the operator's name;
- else the MaxMind GeoLite2 Country + ASN snapshot that the geoip2fast wheel ships
  (`geoip2fast-asn-ipv6.dat.gz`, from 2024-06; loaded once per process, on the first lookup,
  into compact arrays by detectors/geo_bundled.py: ~0.7 s and ~21 MiB, where the library's
  own reader keeps ~110 MB of Python lists). It names an address's operator (`asn_name`, e.g.
  "Deutsche Telekom AG") but has no AS numbers, so `Place.asn` is None with it.

A lookup then costs ~10 us and is cached. `data_info()` says which data is in use and when it was
built; GET /v1/health shows it, with a warning once it is older than PW_GEOIP_MAX_AGE_DAYS (60):
addresses move between countries and operators, so stale data means wrong "new country/network"
alerts. The paths come from `configure()`, or from the PW_* environment on the first lookup.
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
import re
import threading
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, Final, NamedTuple

from detectors.geo_bundled import BundledData
from detectors.geo_bundled import load as load_bundled
from pipeline.authorization import plain_address
from pipeline.memo import MISSING, Memo

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
#: (PW_GEOIP_CITY_DB, PW_GEOIP_ASN_DB) in force; None until configured or read from the environment
_paths: tuple[str, str] | None = None
_mmdb: dict[str, Any] = {}  # "country" / "asn" -> maxminddb.Reader
#: MaxMind's GeoLite2 data is under the GeoLite2 EULA; what GET /v1/health and the docs cite.
BUNDLED_SOURCE = "geoip2fast (MaxMind GeoLite2 Country + ASN, GeoLite2 EULA)"


class Place(NamedTuple):
    country: str | None  # ISO 3166-1 alpha-2 (and XK for Kosovo)
    asn: (
        int | None
    )  # AS number, when the data carries one (an ASN mmdb does; geoip2fast's does not)
    asn_name: str | None  # network operator, e.g. "Deutsche Telekom AG"


NOWHERE = Place(None, None, None)


class GeoData(NamedTuple):
    """One half of the data in use: what it is and when it was built."""

    half: str  # "country" or "asn"
    source: str  # the mmdb path, or BUNDLED_SOURCE
    database_type: str  # e.g. GeoLite2-City, DBIP-ASN-Lite (mmdb), or the bundled file's own name
    built: date | None
    has_asn_numbers: bool


def configure(city_db: str = "", asn_db: str = "") -> None:
    """Use these mmdb files (empty: the bundled data for that half); clears the lookup cache.
    A file that cannot be opened raises ValueError naming the setting."""
    global _paths
    with _lock:
        readers: dict[str, Any] = {}
        for half, variable, path in (
            ("country", "PW_GEOIP_CITY_DB", city_db),
            ("asn", "PW_GEOIP_ASN_DB", asn_db),
        ):
            if path:
                readers[half] = _open_mmdb(variable, path)
        for old in _mmdb.values():
            old.close()
        _mmdb.clear()
        _mmdb.update(readers)
        _paths = (city_db, asn_db)
    _PLACES.clear()
    data_info.cache_clear()


def reset() -> None:
    """Forget the configuration: the next lookup reads PW_GEOIP_* from the environment again."""
    global _paths
    configure()
    _paths = None


def _open_mmdb(variable: str, path: str) -> Any:
    import maxminddb

    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"{variable}={path!r}: not a readable MaxMind DB file ({exc})") from None


def _configured() -> None:
    """Read PW_GEOIP_CITY_DB / PW_GEOIP_ASN_DB from the environment unless `configure` was called."""
    if _paths is None:
        from pipeline.config import Settings

        settings = Settings.from_env()
        configure(settings.geoip_city_db, settings.geoip_asn_db)


def _load() -> Any:
    """The bundled data, loaded once per process: geoip2fast's file in compact arrays
    (detectors/geo_bundled.py, about 21 MiB), or the library's own reader (its lists, about
    110 MB) when the installed geoip2fast is not the release geo_bundled reads."""
    global _reader
    # Read into a local, checked again under the lock: compiled with mypyc, a global tested
    # `is None` is narrowed to None, and a second thread that waited on the lock then found the
    # reader another had loaded and failed ("None object expected").
    reader: Any = _reader
    if reader is None:
        with _lock:
            reader = _reader
            if reader is None:
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
                    reader = load_bundled(Path(data_file))
                    if reader is None:
                        reader = GeoIP2Fast(geoip2fast_data_file=str(data_file))
                _reader = reader
    return reader


def _bundled_lookup(address: IPv4Address | IPv6Address) -> Any:
    """geoip2fast's answer for a global address (`country_code`, `is_private`, `asn_name`)."""
    reader = _load()
    if isinstance(reader, BundledData):
        return reader.lookup(int(address))
    return reader.lookup(str(address))


#: `lookup`'s results (pipeline/memo.py), emptied when the data changes (`configure`).
_PLACES: Final = Memo(65536)


def lookup(ip: str) -> Place:
    """Country and operator of `ip`; `NOWHERE` for private, reserved or unknown addresses."""
    found = _PLACES.get(ip)
    if found is MISSING:
        found = _PLACES.put(ip, _lookup(ip))
    place: Place = found
    return place


def _lookup(ip: str) -> Place:
    address = plain_address(ip)
    if address is None or not address.is_global:
        return NOWHERE
    _configured()
    country_db, asn_db = _mmdb.get("country"), _mmdb.get("asn")
    country: str | None = None
    asn: int | None = None
    asn_name: str | None = None
    if country_db is None or asn_db is None:
        found = _bundled_lookup(address)
        if getattr(found, "is_private", False):
            return NOWHERE
        country = found.country_code if found.country_code not in _NO_COUNTRY else None
        name = found.asn_name.strip() if isinstance(found.asn_name, str) else ""
        asn_name = name if name not in _NO_ASN else None
    if country_db is not None:
        country = _mmdb_country(country_db.get(str(address)))
    if asn_db is not None:
        asn, asn_name = _mmdb_asn(asn_db.get(str(address)))
    return Place(country, asn, asn_name)


def _mmdb_country(record: Any) -> str | None:
    """`country.iso_code` (else `registered_country`) of a City or Country record."""
    if not isinstance(record, dict):
        return None
    for key in ("country", "registered_country"):
        part = record.get(key)
        code = part.get("iso_code") if isinstance(part, dict) else None
        if isinstance(code, str) and len(code) == 2 and code.upper() not in _NO_COUNTRY:
            return code.upper()
    return None


def _mmdb_asn(record: Any) -> tuple[int | None, str | None]:
    if not isinstance(record, dict):
        return None, None
    number = record.get("autonomous_system_number")
    name = record.get("autonomous_system_organization")
    asn = number if isinstance(number, int) and number > 0 else None
    label = name.strip() if isinstance(name, str) and name.strip() not in _NO_ASN else None
    return asn, label


@cache
def data_info() -> tuple[GeoData, ...]:
    """The data in use for each half (country, asn), with its build date."""
    _configured()
    out = []
    bundled: tuple[str, date | None] | None = None
    for half in ("country", "asn"):
        reader = _mmdb.get(half)
        if reader is not None:
            meta = reader.metadata()
            built = (
                datetime.fromtimestamp(meta.build_epoch, UTC).date() if meta.build_epoch else None
            )
            path = (_paths or ("", ""))[0 if half == "country" else 1]
            out.append(GeoData(half, path, str(meta.database_type), built, half == "asn"))
            continue
        if bundled is None:
            bundled = _bundled_info()
        out.append(GeoData(half, BUNDLED_SOURCE, bundled[0], bundled[1], False))
    return tuple(out)


def _bundled_info() -> tuple[str, date | None]:
    """The bundled file's source line (`MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618`) and its date."""
    reader = _load()
    source = (
        reader.source_info
        if isinstance(reader, BundledData)
        else str(reader.get_database_info().get("source_info", ""))
    )
    found = re.search(r"(20\d{6})\b", source)
    built = (
        datetime.strptime(found.group(1), "%Y%m%d").replace(tzinfo=UTC).date() if found else None
    )
    return source or DATA_FILE, built


def staleness(max_age_days: int, today: date | None = None) -> dict[str, Any]:
    """What GET /v1/health shows about the geoip data: each half's source, type and build date,
    and a `warning` when either is older than `max_age_days` (or has no date)."""
    today = today or datetime.now(UTC).date()
    halves: dict[str, Any] = {}
    stale = []
    for info in data_info():
        age = (today - info.built).days if info.built else None
        halves[info.half] = {
            "source": info.source,
            "database_type": info.database_type,
            "built": info.built.isoformat() if info.built else None,
            "age_days": age,
            "asn_numbers": info.has_asn_numbers,
        }
        if age is None or age > max_age_days:
            stale.append(
                f"{info.half} data {'of unknown date' if age is None else f'is {age} days old'}"
            )
    out: dict[str, Any] = dict(halves)
    if stale:
        out["warning"] = (
            f"geoip {' and '.join(stale)} (over {max_age_days}): new_country_or_asn and impossible_travel"
            " judge addresses by it; set PW_GEOIP_CITY_DB and PW_GEOIP_ASN_DB to current mmdb files"
        )
    if not any(info.has_asn_numbers for info in data_info()):
        out["note"] = (
            "no AS numbers in the geoip data: networks are told apart by operator name only (set PW_GEOIP_ASN_DB)"
        )
    return out


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
