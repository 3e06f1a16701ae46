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
from typing import Any, Final, final

import msgspec
import orjson

from pipeline.dedup_window import DedupWindow

# re-exported: importable from here, as before pipeline/dedup_window.py
from pipeline.dedup_window import epoch_day as epoch_day
from pipeline.dedup_window import id_digest as id_digest
from pipeline.event import Event, canonical

GENESIS = "0" * 64
#: Fields the ledger adds to an accepted event. `ingest_offset` is the offset of the source message
#: on the same partition of the actions topic (not covered by the hash: it is transport, not content).
LEDGER_FIELDS = ("seq", "prev_hash", "hash", "ingested_at", "ingest_offset")


@final
class ChainHead:
    """The last entry of one account's chain (a value: compared by its fields, never changed).

    A plain class rather than a frozen dataclass: in the mypyc build (tools/compile_detectors.py)
    a dataclass's `__init__` is the one `dataclasses` writes at import, interpreted, setting each
    field through `object.__setattr__`, and the ingest service makes one head per event
    sequenced (0.27 µs each that way, 0.077 compiled). Its fields are `Final`: mypy refuses an
    assignment, and the compiled class raises on one at run time (pure Python does not)."""

    __slots__ = ("hash", "seq")

    def __init__(self, seq: int = 0, hash: str = GENESIS) -> None:
        self.seq: Final = seq
        self.hash: Final = hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChainHead):
            return NotImplemented
        return self.seq == other.seq and self.hash == other.hash

    def __hash__(self) -> int:
        return hash((self.seq, self.hash))

    def __repr__(self) -> str:
        return f"ChainHead(seq={self.seq!r}, hash={self.hash!r})"

    def __reduce__(self) -> tuple[type[ChainHead], tuple[int, str]]:
        # copy and pickle build a new head (the compiled class's fields cannot be set afterwards)
        return (ChainHead, (self.seq, self.hash))

    def to_json(self) -> list[Any]:
        return [self.seq, self.hash]

    @classmethod
    def from_json(cls, value: Any) -> ChainHead:
        return cls() if not value else cls(int(value[0]), str(value[1]))


_GENESIS_HEAD = ChainHead()


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


def entry_record(
    payload: bytes,
    seq: int,
    prev_hash: str,
    digest: str,
    ingested_at: str,
    ingest_offset: int | None,
) -> bytes:
    """The ledger record of an entry, built on the canonical encoding of its event (`payload`,
    the bytes the hash covers) instead of serializing the event a second time: the event's
    fields (sorted, as `canonical` writes them), then the ledger's. It reads back as the same
    JSON object as `encode_entry` of the entry (tests/unit/test_ledger_record.py)."""
    tail = f',"seq":{seq},"prev_hash":"{prev_hash}","hash":"{digest}","ingested_at":"{ingested_at}"'
    if ingest_offset is not None:
        tail += f',"ingest_offset":{ingest_offset}'
    return payload[:-1] + tail.encode() + b"}"


def event_of(entry: dict[str, Any]) -> Event:
    """The event inside a ledger entry (the entry without the ledger's own fields), its keys in
    the entry's order. A copy less five keys: about a fifth of the time of a comprehension that
    tests every key (the provider stage parses every ledger entry)."""
    event = dict(entry)
    for name in LEDGER_FIELDS:
        # compiled, a lookup and a delete; `pop` with a default is a method call
        if name in event:
            del event[name]  # noqa: RUF051
    return event


#: A ledger record's parser for `entry_event` (untyped: any JSON, as `orjson.loads`).
_ENTRY = msgspec.json.Decoder()


def entry_event(record: bytes) -> Event:
    """The event of a ledger record parsed only to be folded (the provider stage's): the entry
    less the ledger's own fields, in place, no copy.

    Parsed by msgspec, not orjson: orjson presizes the dict of an object of nine keys or more (an
    entry has at least eleven) for keys of any type (CPython's "general" table), where every
    lookup by a string that is not the very object stored (each rule's literal key against the
    parser's own key strings) compares the two through the generic rich comparison; msgspec
    fills a new dict key by key, which keeps the table for strings only, and is no slower to
    parse (`python -m bench.provider_callgrind --parse`, docs/performance.md). The values are
    orjson's for every record ingest writes (tests/unit/test_ledger.py); they differ only on
    integers outside [-2**63, 2**64), which ingest refuses (`pipeline.rejection.MAX_INT`), where
    msgspec keeps the integer and orjson made a float. The stage trusts the ledger (it does not
    check the chain): a record written to the topic by something else than ingest, malformed, stops
    the stage's thread (GET /v1/health says so), with either parser."""
    entry: Event = _ENTRY.decode(record)
    for name in LEDGER_FIELDS:
        if name in entry:  # as in `event_of`
            del entry[name]
    return entry


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
            return ChainBreak(
                seq, event_id, "gap: " + problem if seq > head.seq else "repeat: " + problem
            )
        if prev_hash != head.hash:
            return ChainBreak(seq, event_id, "prev_hash does not match the previous entry's hash")
        if entry_hash(prev_hash, seq, ingested_at, payload) != stored_hash:
            return ChainBreak(seq, event_id, "hash does not match the stored event")
        head = ChainHead(seq, stored_hash)
    return None


#: One account's stored chain, in the order `verify_stored` expects (same SQL on both backends).
CHAIN_QUERY = (
    "SELECT seq, event_id, prev_hash, hash, toString(ingested_at), payload FROM audit.events"
    " WHERE account_id = {account:String} ORDER BY seq"
)


def verify_stored(rows: Iterable[list[Any] | tuple[Any, ...]]) -> ChainBreak | None:
    """Verify rows of `CHAIN_QUERY` (warehouse timestamps are `YYYY-MM-DD HH:MM:SS.mmm`)."""
    return verify(
        (
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            f"{str(r[4]).replace(' ', 'T')}Z",
            str(r[5]).encode(),
        )
        for r in rows
    )


class LedgerState(DedupWindow):
    """Sequencing state of the accounts of one partition: chain heads, and the dedup window of
    recent event ids (`DedupWindow`, pipeline/dedup_window.py: exact, or bounded by Bloom
    filters whose hits are confirmed against the warehouse).

    It is derived from the ledger itself (`observe` every committed entry of the partition, in
    order, or a snapshot of it and the entries after: pipeline/ledger_snapshot.py), never kept
    in a separate store, so it cannot disagree with what was committed: after a crash the worker
    re-reads the ledger partition and continues exactly after its last committed entry, and a
    source event redelivered after it was sequenced is recognized as seen.
    """

    def __init__(
        self, dedup_window_days: float, exact_seconds: float = 0, filter_mb: float = 0
    ) -> None:
        super().__init__(dedup_window_days, exact_seconds, filter_mb)
        self.heads: dict[str, ChainHead] = {}
        #: The next source offset to sequence on this partition (after the last one in the ledger).
        self.next_offset = 0

    def observe(self, entry: dict[str, Any]) -> None:
        """Fold one committed ledger entry into the state (recovery)."""
        account = entry["account_id"]
        self.heads[account] = ChainHead(int(entry["seq"]), entry["hash"])
        key = self._key(entry["ingested_at"])
        self._remember_loaded(id_digest(account, entry["event_id"]), key)
        if "ingest_offset" in entry:
            self.next_offset = max(self.next_offset, int(entry["ingest_offset"]) + 1)

    def accept(
        self, event: Event, ingested_at: str, ingest_offset: int | None = None
    ) -> dict[str, Any] | None:
        """Sequence `event`, or return None when its id was seen inside the dedup window."""
        account = event["account_id"]
        fresh = self._fresh(account, event["event_id"], ingested_at)
        if fresh is None:
            return None
        digest, key = fresh
        entry, self.heads[account] = append(
            self.heads.get(account, ChainHead()), event, ingested_at
        )
        self._remember(digest, key)
        if ingest_offset is not None:
            entry["ingest_offset"] = ingest_offset
        return entry

    def sequence(
        self, event: Event, ingested_at: str, ingest_offset: int, digest: bytes | None = None
    ) -> tuple[int, bytes] | None:
        """`accept` for the ingest service: `(seq, ledger record)`, or None when seen.
        `digest`: the event's `id_digest`, as `prepare` gave it (else computed here).

        One canonical encoding of the event serves the hash and the ledger record
        (`entry_record`), and no entry dict is built."""
        account = event["account_id"]
        fresh = self._fresh(account, event["event_id"], ingested_at, digest)
        if fresh is None:
            return None
        digest, key = fresh
        head = self.heads.get(account, _GENESIS_HEAD)
        seq = head.seq + 1
        payload = canonical(event)
        new_hash = entry_hash(head.hash, seq, ingested_at, payload)
        self.heads[account] = ChainHead(seq, new_hash)
        self._remember(digest, key)
        return seq, entry_record(payload, seq, head.hash, new_hash, ingested_at, ingest_offset)
