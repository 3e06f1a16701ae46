"""The geoip2fast wheel's bundled data, held in compact arrays instead of the library's lists.

geoip2fast (detectors/geo.py's fallback when no mmdb file is set) keeps its GeoLite2 Country +
ASN snapshot as Python lists: 788,735 country networks and 643,637 ASN networks, each a Python
int for the first address, another for the prefix length and another for the name's index, in
chunks. That is about 2 million objects and 104 MiB of Python's heap in every process that looks
an address up (the worker, `partnerwatch provider-stage`), loaded on the first lookup and kept.

This module reads the same file (the library's own pickle, from the installed wheel) and keeps
each column in an `array`: the first addresses of IPv4 networks as 32-bit words, those of IPv6
networks as two 64-bit words (high, low), prefix lengths as bytes, name indexes as 16/32-bit
words: about 16 MiB, and 5 MiB for the 72,293 operator names. A lookup answers what
geoip2fast's `GeoIP2Fast.lookup` answers for the fields geo.py reads (country code, private, ASN
name), quirks included (below), so detection is unchanged; `tests/detectors/test_geo_bundled.py`
compares both on sampled and boundary addresses.

What it mirrors of geoip2fast 1.2.2 (the private layout, hence the version check: another
version or data layout makes `load` return None, and geo.py uses the library's own reader):
- the pickle: `(120, source_info, total, database)`, the database a tuple of ten lists for
  country + ASN data (`_FIELDS`);
- a network is the last one whose first address is <= the address (bisect_right - 1 over all
  chunks in order); the address is "not found" when it lies past that network's end;
- name index < 16: a private or reserved network;
- the ASN half checks the end of the network with IPv6 sizes whenever the data holds IPv6
  networks (`self.ipv6`), also for an IPv4 address, so an IPv4 address past its last ASN network
  gets that network's name: kept as it is, so that alerts stay what they were.
"""

from __future__ import annotations

import gzip
import pickle
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any, NamedTuple

#: The geoip2fast release whose private data layout this module reads.
KNOWN_VERSION = "1.2.2"
#: The data file's format version (the pickle's first item) it reads.
DAT_VERSION = 120
MAX_IPV4 = 2**32
_MASK64 = 2**64 - 1
#: The database tuple of a country + ASN data file, in order.
_FIELDS = (
    "index",
    "index_asn",
    "names_country",
    "names_asn",
    "first_ip",
    "first_ip_asn",
    "id_country",
    "id_asn",
    "netlength",
    "netlength_asn",
)


class Found(NamedTuple):
    """What geoip2fast's lookup gives for an address, the fields geo.py reads."""

    country_code: str  # "--" for private or reserved networks and for addresses not found
    is_private: bool
    asn_name: str  # "" when none


class _Half:
    """One half of the data (country or ASN): sorted first addresses, prefix lengths, name ids."""

    def __init__(self, first: list[list[int]], netlength: list[list[int]], ids: list[list[int]]):
        v4, v6_hi, v6_lo = array("I"), array("Q"), array("Q")
        nets, names = array("B"), array("H" if max(max(c) for c in ids if c) < 2**16 else "I")
        for chunk_first, chunk_len, chunk_ids in zip(first, netlength, ids, strict=True):
            if chunk_first and chunk_first[-1] < MAX_IPV4:  # sorted: all IPv4
                v4.extend(chunk_first)
            else:
                for ip in chunk_first:
                    if ip < MAX_IPV4:
                        v4.append(ip)
                    else:
                        v6_hi.append(ip >> 64)
                        v6_lo.append(ip & _MASK64)
            nets.extend(chunk_len)
            names.extend(chunk_ids)
        self.v4, self.v6_hi, self.v6_lo = v4, v6_hi, v6_lo
        self.netlength, self.ids = nets, names
        if v4.itemsize != 4 or len(nets) != len(v4) + len(v6_hi):
            raise ValueError("geoip2fast data: an unexpected layout")

    def at(self, ip: int) -> int:
        """The index of the last network whose first address is <= ip (-1: none)."""
        v4 = self.v4
        if ip < MAX_IPV4:
            return bisect_right(v4, ip) - 1
        hi, lo = ip >> 64, ip & _MASK64
        start, end = bisect_left(self.v6_hi, hi), bisect_right(self.v6_hi, hi)
        k = bisect_right(self.v6_lo, lo, start, end)
        return len(v4) + k - 1

    def first(self, i: int) -> int:
        n4 = len(self.v4)
        return self.v4[i] if i < n4 else (self.v6_hi[i - n4] << 64) | self.v6_lo[i - n4]

    def last(self, i: int, bits: int) -> int:
        """Network i's last address, its prefix length counted in an address of `bits` bits."""
        return self.first(i) + (1 << (bits - self.netlength[i])) - 1


class BundledData:
    """geoip2fast's bundled country + ASN data in arrays; `lookup(int)` as the library answers."""

    def __init__(self, source_info: str, database: tuple[list[Any], ...]) -> None:
        parts = dict(zip(_FIELDS, database, strict=True))
        self.source_info = source_info
        self.names_country: list[str] = [n.split(":")[0] for n in parts["names_country"]]
        self.names_asn: list[str] = list(parts["names_asn"])
        self.country = _Half(parts["first_ip"], parts["netlength"], parts["id_country"])
        self.asn = _Half(parts["first_ip_asn"], parts["netlength_asn"], parts["id_asn"])
        self.ipv6 = bool(self.country.v6_hi)  # geoip2fast's `self.ipv6`: the data holds IPv6

    def lookup(self, ip: int) -> Found:
        country = self.country
        i = country.at(ip)
        bits = 32 if ip <= MAX_IPV4 else 128  # geoip2fast's test (`iplong <= MAX_IPv4`)
        if i < 0 or ip > country.last(i, bits):
            return Found("--", False, "")
        code_index = country.ids[i]
        private = code_index < 16
        return Found("--" if private else self.names_country[code_index], private, self._asn(ip))

    def _asn(self, ip: int) -> str:
        asn = self.asn
        j = asn.at(ip)
        if j < 0:
            return ""
        bits = 128 if self.ipv6 else 32  # geoip2fast's check (see the module's docstring)
        if ip > asn.last(j, bits):
            return ""
        return self.names_asn[asn.ids[j]]


def load(data_file: Path) -> BundledData | None:
    """The wheel's data file in arrays; None when geoip2fast is not the release or the file not
    the layout this module reads (geo.py then uses the library's reader). geo.py imports
    geoip2fast first (its import sets environment variables that geo.py puts back)."""
    import geoip2fast.geoip2fast as library

    if getattr(library, "__version__", None) != KNOWN_VERSION:
        return None
    with gzip.open(data_file, "rb") as stream:
        # the installed wheel's own data file, the one the library itself unpickles
        version, info, _total, database = pickle.load(stream)  # noqa: S301
    if (
        version != DAT_VERSION
        or not isinstance(info, dict)
        or not (info.get("country") and info.get("asn") and not info.get("city"))
        or len(database) != len(_FIELDS)
    ):
        return None
    return BundledData(str(info.get("info", "")), database)
