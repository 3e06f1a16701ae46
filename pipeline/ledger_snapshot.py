"""Snapshots of one ledger partition's sequencing state (`LedgerState`), as compacted-topic records.

Without a snapshot, a partition's state is rebuilt by reading its whole ledger partition: every
entry of the dedup window, a week of events at the default, which at tens of thousands of events
a second would take hours. The ingest service (streams/ingest_partition.py) therefore writes a
snapshot every `PW_SNAPSHOT_SECONDS`, and with the last transaction before it hands a partition
over (a clean stop or a rebalance) when the ledger moved on since the last one, in the same Kafka
transaction as the batch it follows, to the partition of the same number of the compacted topic
`<PW_APP_ID>-ledger_state-snapshot`; a restart reads that partition and the ledger after the
snapshot's `ledger_end` only.

Records (the latest record per key is what counts, so compaction keeps a snapshot whole):
- `h:<account_id>` -> `<seq> <hash>`: an account's chain head, written only when it changed
  since the previous snapshot (heads are never deleted, as the ledger keeps each account's last
  entry forever);
- `x:<i>` -> chunk i of the exact tier (every (bucket, slot) with its ledger end and digests:
  those of its set and of its sorted runs, in no particular order; a load makes one sorted run
  of them, pipeline/id_runs.py);
- `f:<bucket>:<i>` -> chunk i of a bucket's Bloom filter, written when the filter changed, a
  tombstone once the bucket left the window;
- `head` -> JSON: the snapshot's generation, the ledger's end offset and the next source offset
  it covers, the dedup settings it was made with, and for each chunked section its generation
  and chunk count. Every transaction that writes an `h:`, `x:` or `f:` key writes `head` too, last.
- `state_checkpoint` -> JSON: the source offset below which every event's detection state and
  open alerts are in the state topics (the ingest service writes them every
  `PW_STATE_CHECKPOINT_SECONDS`, with this record, and with every snapshot). A load folds the
  ledger entries from that offset on into their accounts' states; without the record it folds
  none (`checkpoint_of`). Not part of a snapshot: `load` ignores it.

Chunks carry their section's generation, so a reader takes a section only if every chunk is the
one `head` names; a snapshot made with other dedup settings, or that does not hold together, is
not used (the whole ledger partition is read instead, as before snapshots existed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.id_filter import IdFilter
from pipeline.id_runs import IdRun
from pipeline.ledger import ChainHead, LedgerState

VERSION = 1
#: Largest value of one record (the brokers' default limit is 1 MiB).
CHUNK_BYTES = 512 * 1024
HEAD_KEY = b"head"
CHECKPOINT_KEY = b"state_checkpoint"
_SLOT = struct.Struct(">qqqI")  # bucket, slot, ledger end (-1: not committed), id count
_GEN = struct.Struct(">Q")

Record = tuple[bytes | None, bytes | None]


def _settings_of(state: LedgerState) -> dict[str, Any]:
    return {
        "bucket_ms": state.bucket_ms,
        "buckets": state.buckets,
        "slot_ms": state.slot_ms,
        "filter_bits": state.filter_bits,
    }


@dataclass
class SnapshotWriter:
    """What one partition's writer remembers between snapshots: the generation, each chunked
    section's chunk count (to tombstone chunks a section no longer has), and the heads written."""

    generation: int = 0
    sections: dict[str, list[int]] = field(default_factory=dict)
    written_heads: dict[str, ChainHead] = field(default_factory=dict)
    #: the `ledger_end` of the last snapshot written or loaded (0: none, as if one covered the
    #: empty ledger): a snapshot is worth writing at a handover only when the ledger moved on
    ledger_end: int = 0

    def records(self, state: LedgerState) -> list[Record]:
        """The records of a snapshot of `state` (its `ledger_end` and `next_offset` must be those
        of the entries it holds), and the section bookkeeping moved on."""
        self.generation += 1
        gen = self.generation
        out: list[Record] = []
        for account, head in state.heads.items():
            if self.written_heads.get(account) != head:
                out.append((b"h:" + account.encode(), f"{head.seq} {head.hash}".encode()))
                self.written_heads[account] = head
        out += self._section("x", _exact_bytes(state), gen)
        for bucket in sorted(state.dirty_filters):
            name = f"f:{bucket}"
            id_filter = state.filters.get(bucket)
            data = None if id_filter is None else id_filter.to_bytes()
            out += self._section(name, data, gen)
        state.dirty_filters.clear()
        self.ledger_end = state.ledger_end
        header = {
            "v": VERSION,
            "gen": gen,
            "ledger_end": state.ledger_end,
            "next_offset": state.next_offset,
            "settings": _settings_of(state),
            "sections": self.sections,
        }
        out.append((HEAD_KEY, orjson.dumps(header)))
        return out

    def _section(self, name: str, data: bytes | None, gen: int) -> list[Record]:
        old = self.sections.get(name, [0, 0])[1]
        out: list[Record] = []
        chunks = (
            []
            if data is None
            else [data[i : i + CHUNK_BYTES] for i in range(0, max(1, len(data)), CHUNK_BYTES)]
        )
        for i, chunk in enumerate(chunks):
            out.append((f"{name}:{i}".encode(), _GEN.pack(gen) + chunk))
        out += [(f"{name}:{i}".encode(), None) for i in range(len(chunks), old)]
        if data is None:
            self.sections.pop(name, None)
        else:
            self.sections[name] = [gen, len(chunks)]
        return out


def checkpoint_record(next_offset: int) -> Record:
    """The record of a state checkpoint that covers the source records below `next_offset`."""
    return CHECKPOINT_KEY, orjson.dumps({"v": VERSION, "next_offset": next_offset})


def checkpoint_of(records: Iterable[tuple[bytes | None, bytes | None]]) -> int | None:
    """The source offset of the latest state checkpoint among a partition's snapshot topic
    records (in offset order), or None when there is none or it cannot be read."""
    latest: bytes | None = None
    for key, value in records:
        if key == CHECKPOINT_KEY:
            latest = value
    if latest is None:
        return None
    try:
        mark = orjson.loads(latest)
        if mark.get("v") != VERSION:
            return None
        return int(mark["next_offset"])
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None


def _exact_bytes(state: LedgerState) -> bytes:
    parts: list[bytes] = []
    for key in sorted(state.exact_keys()):
        ids = state.exact.get(key, set())
        runs = state.runs.get(key, [])
        count = len(ids) + sum(len(run) for run in runs)
        parts.append(_SLOT.pack(key[0], key[1], state.ends.get(key, -1), count))
        parts.extend(ids)
        parts.extend(run.to_bytes() for run in runs)
    return b"".join(parts)


class Unusable(ValueError):
    """A snapshot that cannot stand for the ledger it was made of (the reason says why)."""


def load(
    records: Iterable[tuple[bytes | None, bytes | None]],
    dedup_window_days: float,
    exact_seconds: float,
    filter_mb: float,
) -> tuple[LedgerState, SnapshotWriter] | None:
    """The state a partition's snapshot records hold (in offset order; committed only), and the
    writer to go on from it; None when the partition has no snapshot. Raises `Unusable`."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        if key is not None:
            latest[key] = value
    raw_head = latest.get(HEAD_KEY)
    if raw_head is None:
        return None
    head = orjson.loads(raw_head)
    if head.get("v") != VERSION:
        raise Unusable(f"snapshot version {head.get('v')!r}, this worker reads {VERSION}")
    state = LedgerState(dedup_window_days, exact_seconds, filter_mb)
    if head["settings"] != _settings_of(state):
        raise Unusable(
            f"made with dedup settings {head['settings']}, these are {_settings_of(state)}"
        )
    sections: dict[str, list[int]] = head["sections"]
    writer = SnapshotWriter(int(head["gen"]), {k: list(v) for k, v in sections.items()})
    for key, value in latest.items():
        if key.startswith(b"h:") and value is not None:
            seq, digest = value.split(b" ")
            head_ = ChainHead(int(seq), digest.decode())
            account = key[2:].decode()
            state.heads[account] = writer.written_heads[account] = head_
    for name, (gen, count) in sections.items():
        data = b"".join(_chunk(latest, name, i, gen) for i in range(count))
        if name == "x":
            _load_exact(state, data)
        elif name.startswith("f:"):
            state.filters[int(name[2:])] = IdFilter.from_bytes(data)
        else:
            raise Unusable(f"unknown section {name!r}")
    state.slot_now = max((key[1] for key in state.exact_keys()), default=-1)
    state.ledger_end = writer.ledger_end = int(head["ledger_end"])
    state.next_offset = int(head["next_offset"])
    return state, writer


def _chunk(latest: dict[bytes, bytes | None], name: str, i: int, gen: int) -> bytes:
    value = latest.get(f"{name}:{i}".encode())
    if value is None or len(value) < _GEN.size:
        raise Unusable(f"section {name}: chunk {i} is missing")
    (found,) = _GEN.unpack_from(value)
    if found != gen:
        raise Unusable(f"section {name}: chunk {i} is of generation {found}, not {gen}")
    return value[_GEN.size :]


def _load_exact(state: LedgerState, data: bytes) -> None:
    at = 0
    while at < len(data):
        bucket, slot, end, count = _SLOT.unpack_from(data, at)
        at += _SLOT.size
        if len(data) < at + 16 * count:
            raise Unusable("the exact tier's section is cut short")
        key = (bucket, slot)
        state.runs[key] = [IdRun.from_bytes(memoryview(data)[at : at + 16 * count])]
        at += 16 * count
        if end >= 0:
            state.ends[key] = end
