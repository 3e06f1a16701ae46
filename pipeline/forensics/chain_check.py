"""Verify a stored account chain over a time range, page by page, from an anchor entry.

`verify-chain --ingested-from T --ingested-to T` must not re-read years of history: it starts from
the last stored entry ingested before `--ingested-from` (the *anchor*: its hash is the `prev_hash`
the range must start from, and its own hash is recomputed from its payload) and checks `seq`
continuity and every hash through the last entry ingested at or before `end_ms` (the command passes
the millisecond before `--ingested-to`, whose end is exclusive like every range of the CLI). Rows are read in windows of `seq`, so a chain
of millions of events is never held in memory, and a repeated `seq` (an inserted copy) is seen.

Every other column of a row is derived from the hashed event (`pipeline.audit_row`): each one is
recomputed from the payload with the loader's own `event_row` and compared, so a row whose
`principal_id` or `source_ip` was rewritten, payload untouched, is a break too.

Ranges are in ledger time (`ingested_at`): it grows with `seq`, event time does not.
The reader is anything with `query(sql, params)` returning `.rows` (a `sinks.clickhouse`
warehouse, or the worker's `/v1/sql` through the CLI), so this module needs neither.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from pipeline.audit_row import DERIVED_COLUMNS, derived_mismatch
from pipeline.event import format_ms, timestamp_ms
from pipeline.ledger import ChainBreak, ChainHead, entry_hash, verify

#: Rows per query: each carries its payload and every derived column (about 1 KB).
PAGE_SEQS = 20_000


class Rows(Protocol):
    @property
    def rows(self) -> Sequence[Sequence[Any]]: ...


class SqlReader(Protocol):
    """What verification needs from a warehouse: read-only SQL with `{name:Type}` parameters."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> Rows: ...


_COLUMNS = "seq, event_id, prev_hash, hash, toString(ingested_at), payload, " + ", ".join(
    f"toString({c})" for c in DERIVED_COLUMNS
)
# Built from constants only (S608): the values are {name:Type} parameters.
ENTRIES_QUERY = (
    f"SELECT {_COLUMNS} FROM audit.events WHERE account_id = {{account:String}}"  # noqa: S608
    " AND seq BETWEEN {lo:UInt64} AND {hi:UInt64} ORDER BY seq"
)
_SEQ_BEFORE = (
    "SELECT max(seq) FROM audit.events WHERE account_id = {account:String}"
    " AND ingested_at < toDateTime64({at:String}, 3, 'UTC')"
)
_SEQ_UNTIL = (
    "SELECT max(seq) FROM audit.events WHERE account_id = {account:String}"
    " AND ingested_at <= toDateTime64({at:String}, 3, 'UTC')"
)
_LAST_SEQ = "SELECT max(seq) FROM audit.events WHERE account_id = {account:String}"
ACCOUNTS_QUERY = "SELECT DISTINCT account_id FROM audit.events ORDER BY account_id"

#: seq, event_id, prev_hash, hash, ingested_at, payload, then the derived columns as stored (text).
StoredEntry = tuple[int, str, str, str, str, bytes, tuple[str, ...]]


def parse_when(text: str) -> int:
    """`2026-11-02`, `2026-11-02T06:00:00` (UTC) or RFC 3339 with an offset -> epoch ms."""
    value = text.strip()
    if len(value) == 10:
        value += "T00:00:00"
    if value[-1:] not in "Zz" and "+" not in value[10:] and "-" not in value[10:]:
        value += "Z"
    return timestamp_ms(value, "time")


def ch_ms(ms: int) -> str:
    """Epoch ms as ClickHouse's `YYYY-MM-DD HH:MM:SS.mmm` (UTC)."""
    text = format_ms(ms)
    return f"{text[:10]} {text[11:23]}"


def iso_of_ch(value: Any) -> str:
    """A warehouse timestamp (`toString` of DateTime64(3), or a datetime) as the ledger writes it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
    text = str(value)
    if len(text) == 19:
        text += ".000"
    return f"{text.replace(' ', 'T')}Z"


def stored_entry(row: Sequence[Any]) -> StoredEntry:
    return (
        int(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        iso_of_ch(row[4]),
        str(row[5]).encode(),
        tuple(str(v) for v in row[6:]),
    )


def column_break(row: StoredEntry) -> ChainBreak | None:
    """A row whose hash verified, checked column by column against its payload."""
    seq, event_id, prev_hash, stored_hash, ingested_at, payload, columns = row
    try:
        entry = orjson.loads(payload)
        entry.update(seq=seq, prev_hash=prev_hash, hash=stored_hash, ingested_at=ingested_at)
        column = derived_mismatch(entry, columns)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        return ChainBreak(
            seq, event_id, "the payload is not an event the columns can be derived from"
        )
    if column:
        return ChainBreak(seq, event_id, f"column {column} does not match the hashed event")
    return None


def _scalar_seq(db: SqlReader, sql: str, params: dict[str, Any]) -> int:
    rows = db.query(sql, params).rows
    return int(rows[0][0] or 0) if rows else 0


def last_seq(db: SqlReader, account: str) -> int:
    return _scalar_seq(db, _LAST_SEQ, {"account": account})


def seq_before(db: SqlReader, account: str, at_ms: int) -> int:
    """The highest `seq` ingested before `at_ms` (0: none, the range starts at genesis)."""
    return _scalar_seq(db, _SEQ_BEFORE, {"account": account, "at": ch_ms(at_ms)})


def seq_until(db: SqlReader, account: str, at_ms: int) -> int:
    return _scalar_seq(db, _SEQ_UNTIL, {"account": account, "at": ch_ms(at_ms)})


def entries(
    db: SqlReader, account: str, lo: int, hi: int, page: int = PAGE_SEQS
) -> Iterator[StoredEntry]:
    """Stored entries with `lo <= seq <= hi`, in `seq` order, read in windows of `page` seqs."""
    start = lo
    while start <= hi:
        end = min(hi, start + page - 1)
        for row in db.query(ENTRIES_QUERY, {"account": account, "lo": start, "hi": end}).rows:
            yield stored_entry(row)
        start = end + 1


def anchor_head(
    db: SqlReader, account: str, anchor_seq: int
) -> tuple[ChainHead, ChainBreak | None]:
    """The head to verify from: genesis, or the anchor entry after checking its own hash."""
    if anchor_seq == 0:
        return ChainHead(), None
    rows = list(entries(db, account, anchor_seq, anchor_seq))
    if len(rows) != 1:
        problem = "anchor entry missing" if not rows else f"anchor seq stored {len(rows)} times"
        return ChainHead(), ChainBreak(anchor_seq, rows[0][1] if rows else "", problem)
    seq, event_id, prev_hash, stored_hash, ingested_at, payload, _ = rows[0]
    if entry_hash(prev_hash, seq, ingested_at, payload) != stored_hash:
        return ChainHead(), ChainBreak(
            seq, event_id, "hash does not match the stored event (the anchor)"
        )
    return ChainHead(seq, stored_hash), None


@dataclass(frozen=True)
class RangeReport:
    """What `verify_range` checked, and the first break if any (or why it could not check)."""

    account: str
    anchor_seq: int
    last_seq: int
    events: int
    broken: ChainBreak | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None and self.error is None


def verify_entries(
    rows: Iterator[StoredEntry], head: ChainHead
) -> tuple[ChainHead, int, ChainBreak | None]:
    """Verify `rows` after `head`; return the last good head, the rows checked and the first break.

    A row breaks the chain when its seq, prev_hash or hash do not follow (`pipeline.ledger.verify`)
    or when a derived column differs from its hashed payload (`column_break`).
    """
    checked = 0
    for row in rows:
        checked += 1
        found = verify((row[:6],), head) or column_break(row)
        if found:
            return head, checked, found
        head = ChainHead(row[0], row[3])
    return head, checked, None


def verify_range(
    db: SqlReader, account: str, start_ms: int | None = None, end_ms: int | None = None
) -> RangeReport:
    """Verify `account`'s entries ingested in `[start_ms, end_ms]` (open ends: whole chain)."""
    anchor_seq = seq_before(db, account, start_ms) if start_ms is not None else 0
    hi = seq_until(db, account, end_ms) if end_ms is not None else last_seq(db, account)
    head, broken = anchor_head(db, account, anchor_seq)
    if broken:
        return RangeReport(account, anchor_seq, hi, 0, broken)
    if hi <= anchor_seq:
        return RangeReport(account, anchor_seq, hi, 0, None)
    _, checked, broken = verify_entries(entries(db, account, anchor_seq + 1, hi), head)
    return RangeReport(account, anchor_seq, hi, checked, broken)


def verify_accounts(
    db: SqlReader, names: Sequence[str], start_ms: int | None = None, end_ms: int | None = None
) -> list[RangeReport]:
    """`verify_range` for each account; one that cannot be read is reported and the rest go on."""
    reports = []
    for account in names:
        try:
            reports.append(verify_range(db, account, start_ms, end_ms))
        except (
            Exception
        ) as exc:  # the reader's own error type (warehouse, HTTP): reported per account
            reports.append(RangeReport(account, 0, 0, 0, None, f"could not be verified: {exc}"))
    return reports


def accounts(db: SqlReader) -> list[str]:
    return [str(r[0]) for r in db.query(ACCOUNTS_QUERY, {}).rows]
