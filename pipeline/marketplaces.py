"""Amazon marketplaces: the site codes events store, and the names they may be sent under.

An event's `marketplace` (and a grant's `marketplaces`, a policy's tax filings) may name a site by
its Amazon marketplace ID (`ATVPDKIKX0DER`) or by its country code (`US`). Both are stored as the
country code, the form every event before issue 17 used, so detectors, grants and stored ledgers
keep comparing like with like: `ATVPDKIKX0DER` is stored as `US`. Great Britain's site is stored as
`UK` (Amazon's own name for it, and the stored form from the start); `GB`, its ISO 3166 code that
the Sellers API returns in `countryCode`, and `A1F83G8C2ARO7P` name the same site.

Codes and IDs are case-sensitive, as Amazon writes them (upper case). The table is Amazon's
(developer docs, "Marketplace IDs"); `REGIONS` says which SP-API endpoint serves each site.
"""

from __future__ import annotations

#: Stored site code -> Amazon marketplace ID.
MARKETPLACE_IDS: dict[str, str] = {
    # North America (sellingpartnerapi-na)
    "CA": "A2EUQ1WTGCTBG2",
    "US": "ATVPDKIKX0DER",
    "MX": "A1AM78C64UM0Y8",
    "BR": "A2Q3Y263D00KWC",
    # Europe, Middle East, Africa, India (sellingpartnerapi-eu)
    "IE": "A28R8C7NBKEWEA",
    "ES": "A1RKKUPIHCS9HS",
    "UK": "A1F83G8C2ARO7P",
    "FR": "A13V1IB3VIYZZH",
    "BE": "AMEN7PMS3EDWL",
    "NL": "A1805IZSGTT6HS",
    "DE": "A1PA6795UKMFR9",
    "IT": "APJ6JRA9NG5V4",
    "SE": "A2NODRKZP88ZB9",
    "ZA": "AE08WJ6YKNBMC",
    "PL": "A1C3SOZRARQ6R3",
    "EG": "ARBP9OOSHTCHU",
    "TR": "A33AVAJ2PDY3EV",
    "SA": "A17E79C6D8DWNP",
    "AE": "A2VIGQ35RCS4UG",
    "IN": "A21TJRUUN4KGV",
    # Far East (sellingpartnerapi-fe)
    "SG": "A19VAU5U5O7RUS",
    "AU": "A39IBJ37TRP1C6",
    "JP": "A1VC38T7YXB528",
}

#: Other country codes of a stored site (ISO 3166 where Amazon's name differs).
ALIASES: dict[str, str] = {"GB": "UK"}

#: Stored site code -> SP-API region (`na`, `eu`, `fe`).
REGIONS: dict[str, str] = {
    **dict.fromkeys(("CA", "US", "MX", "BR"), "na"),
    **dict.fromkeys(("SG", "AU", "JP"), "fe"),
    **dict.fromkeys(("IE", "ES", "UK", "FR", "BE", "NL", "DE", "IT", "SE", "ZA", "PL", "EG"), "eu"),
    **dict.fromkeys(("TR", "SA", "AE", "IN"), "eu"),
}

#: The stored form of every accepted name: site codes, their aliases and the marketplace IDs.
_STORED: dict[str, str] = {
    **{code: code for code in MARKETPLACE_IDS},
    **ALIASES,
    **{mid: code for code, mid in MARKETPLACE_IDS.items()},
}

#: Every site code an event may store.
SITES: frozenset[str] = frozenset(MARKETPLACE_IDS)

#: Every name `site_code` accepts (codes, aliases, marketplace IDs), for schemas and docs.
ACCEPTED: frozenset[str] = frozenset(_STORED)


def site_code(name: object) -> str | None:
    """The stored site code of a marketplace ID or country code; None if it names no site."""
    if not isinstance(name, str):
        return None
    return _STORED.get(name)


def marketplace_id(site: str) -> str:
    """The Amazon marketplace ID of a stored site code (or of any accepted name)."""
    code = site_code(site)
    if code is None:
        raise KeyError(site)
    return MARKETPLACE_IDS[code]
