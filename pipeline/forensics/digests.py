"""Signed digests of each account's chain head, per closed period (CloudTrail digest files, here).

The hash chain shows that stored events agree with each other; it cannot show that someone with
write access did not rewrite the whole tail and re-hash it. A digest signs the chain head at the
end of each period (`head_hash` of entry `last_seq`) and the previous digest's hash, so
rewriting any digested entry, or dropping the tail, no longer matches a signature that only the
key holder can make. With Ed25519 an auditor verifies with the public key alone.

A digest is only made over a chain that verifies from the previous digest's head: the run stops
at a gap (a row not stored yet, or deleted) or a break and reports it, and never signs past it.
An account that cannot be read is reported too, and the other accounts are digested all the same.
Periods are in ledger time (`ingested_at`); the `seq` range is what a digest covers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, Protocol

import orjson

from pipeline.event import format_ms, timestamp_ms
from pipeline.forensics.chain_check import (
    SqlReader,
    StoredEntry,
    accounts,
    entries,
    iso_of_ch,
    last_seq,
    verify_entries,
)
from pipeline.forensics.signing import Signer
from pipeline.ledger import GENESIS, ChainBreak, ChainHead

PERIOD_MS = {"hour": 3_600_000, "day": 86_400_000}
TABLE = "audit.chain_digests"
_FIELDS = (
    "account_id",
    "period_start",
    "period_end",
    "first_seq",
    "last_seq",
    "event_count",
    "head_hash",
    "prev_digest_hash",
    "signed_at",
    "key_id",
    "algorithm",
)
DIGESTS_QUERY = (
    "SELECT account_id, toString(period_start), toString(period_end), first_seq, last_seq, event_count,"
    " head_hash, prev_digest_hash, toString(signed_at), key_id, algorithm, signature"
    " FROM audit.chain_digests FINAL WHERE account_id = {account:String} ORDER BY first_seq"
)


class DigestStore(SqlReader, Protocol):
    """A warehouse that also takes inserts (`sinks.clickhouse.Warehouse` is one)."""

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Digest:
    """One signed digest; times are `YYYY-MM-DDTHH:MM:SS.mmmZ`."""

    account_id: str
    period_start: str
    period_end: str
    first_seq: int
    last_seq: int
    event_count: int
    head_hash: str
    prev_digest_hash: str
    signed_at: str
    key_id: str
    algorithm: str
    signature: str = ""

    def message(self) -> bytes:
        """What is signed: canonical JSON of every field but the signature."""
        doc = {name: getattr(self, name) for name in _FIELDS}
        return orjson.dumps({"partnerwatch_digest": 1, **doc}, option=orjson.OPT_SORT_KEYS)

    @property
    def digest_hash(self) -> str:
        """What the next digest names as `prev_digest_hash` (covers the signature too)."""
        return hashlib.sha256(self.message() + b"\n" + self.signature.encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "digest_hash": self.digest_hash}

    def row(self) -> dict[str, Any]:
        row = self.as_dict()
        for name in ("period_start", "period_end", "signed_at"):
            row[name] = f"{row[name][:10]} {row[name][11:23]}"
        return row

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Digest:
        values = {name: doc[name] for name in (*_FIELDS, "signature")}
        for name in ("first_seq", "last_seq", "event_count"):
            values[name] = int(values[name])
        return cls(**values)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Digest:
        return cls(
            str(row[0]),
            iso_of_ch(row[1]),
            iso_of_ch(row[2]),
            int(row[3]),
            int(row[4]),
            int(row[5]),
            str(row[6]),
            str(row[7]),
            iso_of_ch(row[8]),
            str(row[9]),
            str(row[10]),
            str(row[11]),
        )


def stored_digests(db: SqlReader, account: str) -> list[Digest]:
    return [Digest.from_row(r) for r in db.query(DIGESTS_QUERY, {"account": account}).rows]


@dataclass(frozen=True)
class Problem:
    """Something that does not verify, or a chain that cannot be digested yet."""

    account: str
    message: str
    seq: int | None = None
    event_id: str = ""

    def __str__(self) -> str:
        where = (
            f" at seq {self.seq}" + (f" (event {self.event_id})" if self.event_id else "")
            if self.seq
            else ""
        )
        return f"account {self.account}{where}: {self.message}"


def _problem(account: str, found: ChainBreak) -> Problem:
    return Problem(account, found.problem, found.seq, found.event_id)


# -- creating -------------------------------------------------------------------------------------


def create_digests(
    db: DigestStore,
    signer: Signer,
    period: str,
    now_ms: int,
    delay_ms: int,
    account: str | None = None,
) -> tuple[list[Digest], list[Problem]]:
    """Digest every closed period not digested yet (idempotent); return new digests and problems.

    A period is closed once `delay_ms` has passed after its end, so rows still on their way to the
    warehouse are in it. Each account continues from its last stored digest.
    """
    span = PERIOD_MS[period]
    cutoff = (now_ms - delay_ms) // span * span
    made: list[Digest] = []
    problems: list[Problem] = []
    for acct in [account] if account else accounts(db):
        try:
            new, problem = _account_digests(db, signer, acct, span, cutoff, format_ms(now_ms))
            if new:
                db.insert(TABLE, [d.row() for d in new])
        except (
            Exception
        ) as exc:  # the store's own error type: this account is reported, the rest go on
            problems.append(Problem(acct, f"not digested: {exc}"))
            continue
        made.extend(new)
        if problem:
            problems.append(problem)
    return made, problems


def _account_digests(
    db: SqlReader, signer: Signer, account: str, span: int, cutoff: int, signed_at: str
) -> tuple[list[Digest], Problem | None]:
    previous = stored_digests(db, account)
    last = previous[-1] if previous else None
    head = ChainHead(last.last_seq, last.head_hash) if last else ChainHead()
    periods = _Periods(
        signer,
        account,
        span,
        signed_at,
        floor_ms=timestamp_ms(last.period_end, "period_end") if last else 0,
        prev_hash=last.digest_hash if last else GENESIS,
    )
    chunk: list[StoredEntry] = []
    broken: ChainBreak | None = None

    def consume() -> ChainBreak | None:
        nonlocal head
        good, _, found = verify_entries(iter(chunk), head)
        for seq, _, _, entry_hash, ingested_at, _, _ in chunk:
            if seq > good.seq:
                break
            periods.add(seq, entry_hash, _hour_ms(ingested_at[:13]))
        head = good
        chunk.clear()
        return found

    cutoff_at = format_ms(cutoff)  # ledger timestamps compare as strings (one fixed format)
    for entry in entries(db, account, head.seq + 1, last_seq(db, account)):
        if entry[4] >= cutoff_at:
            break
        chunk.append(entry)
        if len(chunk) >= 10_000 and (broken := consume()):
            break
    if not broken:
        broken = consume()
    problem = None
    if broken:
        problem = _problem(account, broken)
        if broken.problem.startswith("gap"):
            problem = replace(
                problem, message=f"{broken.problem}; digests wait for seq {head.seq + 1}"
            )
    return periods.finish(), problem


@lru_cache(maxsize=4096)
def _hour_ms(hour: str) -> int:
    """`YYYY-MM-DDTHH` -> epoch ms of that hour (periods are whole hours or days)."""
    return timestamp_ms(f"{hour}:00:00Z", "ingested_at")


class _Periods:
    """Verified entries, split into periods (monotone: a late entry joins the current one), signed."""

    def __init__(
        self, signer: Signer, account: str, span: int, signed_at: str, floor_ms: int, prev_hash: str
    ) -> None:
        self.signer, self.account, self.span, self.signed_at = signer, account, span, signed_at
        self.floor_ms, self.prev_hash = floor_ms, prev_hash
        self.made: list[Digest] = []
        self.start: int | None = None
        self.first = self.last = 0
        self.head = ""

    def add(self, seq: int, entry_hash: str, ingested_ms: int) -> None:
        start = max(ingested_ms // self.span * self.span, self.floor_ms)
        if self.start is None or start > self.start:
            self._close()
            self.start, self.first = start, seq
            self.floor_ms = start
        self.last, self.head = seq, entry_hash

    def finish(self) -> list[Digest]:
        self._close()
        return self.made

    def _close(self) -> None:
        if self.start is None:
            return
        digest = Digest(
            self.account,
            format_ms(self.start),
            format_ms(self.start + self.span),
            self.first,
            self.last,
            self.last - self.first + 1,
            self.head,
            self.prev_hash,
            self.signed_at,
            self.signer.key_id,
            self.signer.algorithm,
        )
        digest = replace(digest, signature=self.signer.sign(digest.message()))
        self.made.append(digest)
        self.prev_hash = digest.digest_hash
        self.start = None
