"""The per-account ledger: gap-free `seq` numbers and a SHA-256 hash chain over canonical events.

Each accepted event gets the next `seq` of its account and
`hash = sha256(prev_hash "\\n" seq "\\n" ingested_at "\\n" canonical(event))`, where `prev_hash`
is the previous entry's hash (64 zeros before `seq` 1). Changing, dropping or reordering any
stored event breaks every later hash, which `verify` reports with the first bad `seq`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.event import Event, canonical

GENESIS = "0" * 64
#: Fields the ledger adds to an accepted event.
LEDGER_FIELDS = ("seq", "prev_hash", "hash", "ingested_at")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last entry of one account's chain."""

    seq: int = 0
    hash: str = GENESIS

    def to_json(self) -> list[Any]:
        return [self.seq, self.hash]

    @classmethod
    def from_json(cls, value: Any) -> ChainHead:
        return cls() if not value else cls(int(value[0]), str(value[1]))


def entry_hash(prev_hash: str, seq: int, ingested_at: str, payload: bytes) -> str:
    """Hash of one ledger entry; `payload` is the canonical serialization of the event."""
    digest = hashlib.sha256(f"{prev_hash}\n{seq}\n{ingested_at}\n".encode())
    digest.update(payload)
    return digest.hexdigest()


def append(head: ChainHead, event: Event, ingested_at: str) -> tuple[dict[str, Any], ChainHead]:
    """Sequence one accepted event after `head`; return the ledger entry and the new head."""
    seq = head.seq + 1
    digest = entry_hash(head.hash, seq, ingested_at, canonical(event))
    entry = dict(event)
    entry["seq"] = seq
    entry["prev_hash"] = head.hash
    entry["hash"] = digest
    entry["ingested_at"] = ingested_at
    return entry, ChainHead(seq, digest)


def event_of(entry: dict[str, Any]) -> Event:
    """The event inside a ledger entry (the entry without the ledger's own fields)."""
    return {k: v for k, v in entry.items() if k not in LEDGER_FIELDS}


def encode_entry(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place where a stored chain does not verify."""

    seq: int
    event_id: str
    problem: str


def verify(
    rows: Iterable[tuple[int, str, str, str, str, bytes]], start: ChainHead | None = None
) -> ChainBreak | None:
    """Verify rows `(seq, event_id, prev_hash, hash, ingested_at, payload)` in `seq` order.

    Starts from `start` (default: the genesis head, so `seq` must begin at 1).
    """
    head = start or ChainHead()
    for seq, event_id, prev_hash, stored_hash, ingested_at, payload in rows:
        if seq != head.seq + 1:
            problem = f"expected seq {head.seq + 1}, found {seq}"
            return ChainBreak(seq, event_id, "gap: " + problem if seq > head.seq else "repeat: " + problem)
        if prev_hash != head.hash:
            return ChainBreak(seq, event_id, "prev_hash does not match the previous entry's hash")
        if entry_hash(prev_hash, seq, ingested_at, payload) != stored_hash:
            return ChainBreak(seq, event_id, "hash does not match the stored event")
        head = ChainHead(seq, stored_hash)
    return None
