"""The networks a principal is known to use, learned from its own events (across accounts).

A stolen credential shows up from the thief's network: "from a network new to the principal"
is what turns "active on many accounts" or "back after weeks" into a finding. A network is the
/24 (IPv4) or /48 (IPv6) of the source address (`detectors.networks.network`); each known one
remembers when the principal first and last used it (event time). A network is *fresh* at an
event when the principal first used it less than a given time before, and only counts as new
once the principal had a history before it (`since`: its first event), so a principal's first
networks are learned, not reported.

Memory is bounded: at most `MAX_NETWORKS` per principal (the least recently used is dropped) and
each forgotten `FORGET_DAYS` after its last use.
"""

from __future__ import annotations

from typing import Any

MAX_NETWORKS = 32
FORGET_DAYS = 90
_DAY_MS = 86_400_000


def learn(record: dict[str, Any], net: str, now: int) -> None:
    """Record that the principal (`record`: its state) used `net` at `now` (ms)."""
    since = record.get("since")
    if since is None or now < since:
        record["since"] = now
    known: dict[str, list[int]] | None = record.get("nets")
    if known is None:
        known = record["nets"] = {}
    seen = known.get(net)
    if seen is None:
        known[net] = [now, now]
    else:
        if now < seen[0]:
            seen[0] = now
        if now > seen[1]:
            seen[1] = now
    horizon = now - FORGET_DAYS * _DAY_MS
    for old in [n for n, times in known.items() if times[1] < horizon]:
        del known[old]
    while len(known) > MAX_NETWORKS:
        del known[min(known, key=lambda n: (known[n][1], n))]


def is_fresh(record: dict[str, Any], net: str, now: int, fresh_ms: int, learn_ms: int) -> bool:
    """`net` was first used less than `fresh_ms` before `now`, by a principal that had been
    active for at least `learn_ms` before that first use (call after `learn`)."""
    seen = record.get("nets", {}).get(net)
    if seen is None:
        return False
    first = int(seen[0])
    return now - first < fresh_ms and first - record.get("since", first) >= learn_ms
