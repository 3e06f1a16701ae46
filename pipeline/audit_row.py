"""One `audit.events` row from a ledger entry, and the check that a stored row still matches it.

Every column of `audit.events` is either a ledger field covered by the hash chain (`seq`,
`prev_hash`, `hash`, `ingested_at`, and `payload`, the canonical event the hash covers) or is
*derived* from the entry by `event_row`. The loader writes rows with `event_row`
(sinks/audit_store.py) and `verify-chain` recomputes the derived columns from the hashed payload
with the same function (`derived_mismatch`), so an `ALTER UPDATE principal_id = ...` that leaves
the payload alone is reported like an edited payload. A column added to `audit.events` must be
added here too, or tests/security/test_chain_columns.py fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.event import canonical
from pipeline.ledger import event_of

#: The columns `event_row` writes, in table order.
EVENT_COLUMNS = (
    "event_id",
    "account_id",
    "seq",
    "occurred_at",
    "ingested_at",
    "action",
    "marketplace",
    "actor_type",
    "provider_id",
    "principal_id",
    "source_ip",
    "user_agent",
    "session_id",
    "operation",
    "resource_type",
    "resource_id",
    "outcome",
    "approval_id",
    "amount_value",
    "amount_currency",
    "changes",
    "prev_hash",
    "hash",
    "payload",
    "entry_seq",
)
#: Columns the hash chain covers directly (`pipeline.ledger.verify`).
CHAINED_COLUMNS = ("seq", "prev_hash", "hash", "ingested_at", "payload")
#: Columns derived from the hashed entry: `derived_mismatch` compares them with `event_row`.
DERIVED_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in CHAINED_COLUMNS)


def ch_time(ts: str) -> str:
    """`2026-01-02T03:04:05.678Z` -> `2026-01-02 03:04:05.678` (ClickHouse's basic input format)."""
    return f"{ts[:10]} {ts[11:23]}"


def event_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One `audit.events` row from a ledger entry (the event plus `seq`, `prev_hash`, `hash`, `ingested_at`).

    `entry_seq` repeats `seq` in the table's sorting key (migration 0006): ReplacingMergeTree then
    collapses a redelivered entry (same seq) but never a late repeat of an event_id (a new seq).
    """
    actor = entry["actor"]
    source = entry.get("source", {})
    resource = entry.get("resource", {})
    amount = entry.get("amount", {})
    changes = entry.get("changes")
    return {
        "event_id": entry["event_id"],
        "account_id": entry["account_id"],
        "seq": entry["seq"],
        "occurred_at": ch_time(entry["occurred_at"]),
        "ingested_at": ch_time(entry["ingested_at"]),
        "action": entry["action"],
        "marketplace": entry.get("marketplace", ""),
        "actor_type": actor["type"],
        "provider_id": actor.get("provider_id", ""),
        "principal_id": actor["principal_id"],
        "source_ip": source.get("ip", ""),
        "user_agent": source.get("user_agent", ""),
        "session_id": source.get("session_id", ""),
        "operation": entry.get("operation", ""),
        "resource_type": resource.get("type", ""),
        "resource_id": resource.get("id", ""),
        "outcome": entry["outcome"],
        "approval_id": entry.get("approval_id", ""),
        "amount_value": amount.get("value", ""),
        "amount_currency": amount.get("currency", ""),
        "changes": orjson.dumps(changes).decode() if changes is not None else "",
        "prev_hash": entry["prev_hash"],
        "hash": entry["hash"],
        "payload": canonical(event_of(entry)).decode(),
        "entry_seq": entry["seq"],
    }


def derived_mismatch(entry: dict[str, Any], stored: Sequence[str]) -> str | None:
    """The first of `DERIVED_COLUMNS` whose stored text (`toString(column)`, in that order) is not
    what `event_row(entry)` makes of the hashed entry; None when all match.

    `changes` is JSON: any key order the loader may have written is accepted, nothing else (no
    spaces, no repeated keys, `true` is not `1`). `entry_seq` is 0 in rows stored before migration
    0006 added it (it is only a sorting key: nothing reads it).
    """
    expected = event_row(entry)
    for name, text in zip(DERIVED_COLUMNS, stored, strict=True):
        want = expected[name]
        if name == "changes":
            if not _same_json(text, want):
                return name
        elif name == "entry_seq":
            if text not in (str(want), "0"):
                return name
        elif text != str(want):
            return name
    return None


def _same_json(text: str, want: str) -> bool:
    if text == want:
        return True
    if not text or not want:
        return False
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    sort = orjson.OPT_SORT_KEYS
    # Compact orjson text of the same value in some key order: re-dumping gives the text back
    # (rules out spacing, escapes and repeated keys), and sorted, the same bytes as the payload's.
    return orjson.dumps(value).decode() == text and orjson.dumps(
        value, option=sort
    ) == orjson.dumps(orjson.loads(want), option=sort)
