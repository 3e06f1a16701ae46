"""Verifying the signed chain digests (pipeline/forensics/digests.py) and the rows they cover.

`check_digest_chain` checks signatures, the digest chain and contiguous seq ranges;
`verify_digests` also re-computes each digest from the warehouse's rows; `digests_covering`
selects the digests an evidence bundle needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.forensics.chain_check import (
    SqlReader,
    StoredEntry,
    entries,
    verify_entries,
)
from pipeline.forensics.digests import Digest, Problem, _problem, stored_digests
from pipeline.forensics.signing import Verifier
from pipeline.ledger import GENESIS, ChainHead

_DIGEST_ACCOUNTS = "SELECT DISTINCT account_id FROM audit.chain_digests ORDER BY account_id"


# -- verifying ------------------------------------------------------------------------------------


def check_digest_chain(
    account: str, digests: Iterable[Digest], verifier: Verifier, *, from_genesis: bool
) -> list[Problem]:
    """Signatures, the chain of digests (prev_digest_hash) and contiguous seq ranges.

    `from_genesis`: the first digest must be the account's first (a bundle may start later).
    """
    problems = []
    previous: Digest | None = None
    for d in digests:
        where = f"digest seq {d.first_seq}-{d.last_seq}"
        wrong = verifier.verify(d.message(), d.signature, d.algorithm, d.key_id)
        if wrong:
            problems.append(Problem(account, f"{where}: {wrong}", d.first_seq))
        if d.event_count != d.last_seq - d.first_seq + 1:
            problems.append(
                Problem(
                    account,
                    f"{where}: event_count {d.event_count} does not fit its range",
                    d.first_seq,
                )
            )
        if previous is None:
            if from_genesis and (d.first_seq != 1 or d.prev_digest_hash != GENESIS):
                problems.append(
                    Problem(
                        account, f"{where}: the first digest does not start the chain", d.first_seq
                    )
                )
        else:
            if d.prev_digest_hash != previous.digest_hash:
                problems.append(
                    Problem(
                        account,
                        f"{where}: prev_digest_hash does not name the previous digest",
                        d.first_seq,
                    )
                )
            if d.first_seq != previous.last_seq + 1:
                problems.append(
                    Problem(
                        account, f"{where}: does not follow seq {previous.last_seq}", d.first_seq
                    )
                )
        previous = d
    return problems


@dataclass(frozen=True)
class DigestReport:
    accounts: int
    digests: int
    events: int
    problems: list[Problem]


def verify_digests(db: SqlReader, verifier: Verifier, account: str | None = None) -> DigestReport:
    """Check every stored digest, and that the warehouse still holds the chain they signed."""
    problems: list[Problem] = []
    names = [account] if account else [str(r[0]) for r in db.query(_DIGEST_ACCOUNTS, {}).rows]
    total_digests = total_events = 0
    for acct in names:
        try:
            digests = stored_digests(db, acct)
            total_digests += len(digests)
            problems += check_digest_chain(acct, digests, verifier, from_genesis=True)
            if not digests:
                problems.append(Problem(acct, "no digest stored"))
                continue
            checked, found = _match_warehouse(db, acct, digests)
        except (
            Exception
        ) as exc:  # the reader's own error type: this account is reported, the rest go on
            problems.append(Problem(acct, f"could not be verified: {exc}"))
            continue
        total_events += checked
        problems += found
    return DigestReport(len(names), total_digests, total_events, problems)


def _match_warehouse(
    db: SqlReader, account: str, digests: list[Digest]
) -> tuple[int, list[Problem]]:
    """Recompute the stored chain through the last digest; each head must be the signed one."""
    heads = {d.last_seq: d.head_hash for d in digests}
    end = digests[-1].last_seq
    problems: list[Problem] = []
    head = ChainHead()
    checked = 0
    window: list[StoredEntry] = []

    def check(rows: list[StoredEntry]) -> bool:
        nonlocal head, checked
        good, n, broken = verify_entries(iter(rows), head)
        checked += n
        for seq, event_id, _, stored_hash, _, _, _ in rows:
            if seq > good.seq:
                break
            if seq in heads and stored_hash != heads[seq]:
                problems.append(
                    Problem(
                        account, "stored chain head differs from the signed digest", seq, event_id
                    )
                )
                return False
        head = good
        if broken:
            problems.append(_problem(account, broken))
            return False
        return True

    for entry in entries(db, account, 1, end):
        window.append(entry)
        if len(window) >= 10_000:
            if not check(window):
                return checked, problems
            window = []
    if window and not check(window):
        return checked, problems
    if head.seq < end:
        problems.append(
            Problem(
                account,
                f"entries {head.seq + 1}..{end} are signed by a digest but not stored",
                head.seq + 1,
            )
        )
    return checked, problems


def digests_covering(db: SqlReader, account: str, lo: int, hi: int) -> list[Digest]:
    """The stored digests whose seq range meets `[lo, hi]`."""
    return [d for d in stored_digests(db, account) if d.last_seq >= lo and d.first_seq <= hi]
