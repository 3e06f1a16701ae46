"""Evidence bundles: one account's events and alerts for a period, with the proof they are intact.

A bundle is a zip a seller attaches to a case. It verifies without the warehouse:

- `manifest.json` names every file with its SHA-256 (and `manifest.sig` signs it when a key is set);
- `chain.jsonl` holds the chain from the entry before the period (the anchor) through the last
  entry a covering digest signs, each with the canonical payload it hashes, so every hash is
  recomputed offline (`pipeline.ledger.entry_hash`);
- `events.jsonl` are the ledger entries of the period (event time, `occurred_at`), each of
  which must recompute to its place in the chain; `events.csv` is the same, flat, for spreadsheets;
- `digests.jsonl` + `public_key.pem`: the signed digests covering those entries (their heads must
  be in the chain), so re-hashing a rewritten history does not pass;
- `alerts.jsonl` / `alerts.csv`: the account's alerts overlapping the period (covered by the
  manifest and its signature, not by the chain).

Without its signature a bundle proves only that it is consistent with itself: whoever edits an
event can re-hash the chain, drop `digests.jsonl` and `manifest.sig` and rewrite the manifest. So
`verify_bundle` (evidence_check.py) refuses a bundle whose manifest signature it could not check
(none, or no key to check it with) unless asked with `allow_unsigned`, and then reports it `unsigned`; with a pinned
public key, a missing signature is always a problem.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.event import format_ms
from pipeline.forensics.chain_check import SqlReader, ch_ms, entries, iso_of_ch
from pipeline.forensics.digest_verification import digests_covering
from pipeline.forensics.digests import Digest
from pipeline.forensics.signing import Signer

FORMAT = "partnerwatch-evidence/1"
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
)
ALERT_COLUMNS = (
    "alert_id",
    "detector",
    "severity",
    "account_id",
    "provider_id",
    "principal_id",
    "title",
    "summary",
    "evidence_event_ids",
    "first_seen",
    "last_seen",
    "count",
    "response",
)
_PERIOD_EVENTS = (
    "SELECT seq, toString(ingested_at), prev_hash, hash, payload FROM audit.events"
    " WHERE account_id = {account:String} AND occurred_at >= toDateTime64({start:String}, 3, 'UTC')"
    " AND occurred_at < toDateTime64({end:String}, 3, 'UTC') ORDER BY seq"
)
_PERIOD_ALERTS = (
    "SELECT alert_id, detector, severity, account_id, provider_id, principal_id, title, summary,"
    " evidence_event_ids, toString(first_seen), toString(last_seen), count, response"
    " FROM audit.alerts FINAL WHERE account_id = {account:String}"
    " AND last_seen >= toDateTime64({start:String}, 3, 'UTC') AND first_seen < toDateTime64({end:String}, 3, 'UTC')"
    " ORDER BY first_seen, alert_id"
)


def flat_event(entry: dict[str, Any]) -> list[str]:
    """One CSV row of a ledger entry (the columns of audit.events, without the payload)."""
    actor, source = entry["actor"], entry.get("source", {})
    resource, amount = entry.get("resource", {}), entry.get("amount", {})
    changes = entry.get("changes")
    return [
        entry["event_id"],
        entry["account_id"],
        str(entry["seq"]),
        entry["occurred_at"],
        entry["ingested_at"],
        entry["action"],
        entry.get("marketplace", ""),
        actor["type"],
        actor.get("provider_id", ""),
        actor["principal_id"],
        source.get("ip", ""),
        source.get("user_agent", ""),
        source.get("session_id", ""),
        entry.get("operation", ""),
        resource.get("type", ""),
        resource.get("id", ""),
        entry["outcome"],
        entry.get("approval_id", ""),
        amount.get("value", ""),
        amount.get("currency", ""),
        orjson.dumps(changes).decode() if changes is not None else "",
        entry["prev_hash"],
        entry["hash"],
    ]


def flat_alert(alert: dict[str, Any]) -> list[str]:
    return [
        orjson.dumps(alert[c]).decode() if isinstance(alert[c], list) else str(alert[c])
        for c in ALERT_COLUMNS
    ]


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """Every field quoted: with minimal quoting a lone carriage return in an id is written bare, and
    the bundle's own CSV would not read back (any bundle of such an account failed to verify)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _jsonl(docs: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


# -- building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleSummary:
    events: int
    alerts: int
    chain_from: int
    chain_to: int
    digests: int


def build_bundle(
    db: SqlReader,
    account: str,
    start_ms: int,
    end_ms: int,
    out: Path,
    signer: Signer | None,
    created_ms: int,
) -> BundleSummary:
    """Write the bundle for `account`'s events with `start_ms <= occurred_at < end_ms` to `out`."""
    window = {"account": account, "start": ch_ms(start_ms), "end": ch_ms(end_ms)}
    period = []
    for seq, ingested_at, prev_hash, entry_hash_, payload in db.query(_PERIOD_EVENTS, window).rows:
        entry = orjson.loads(payload)
        entry.update(
            seq=int(seq),
            prev_hash=str(prev_hash),
            hash=str(entry_hash_),
            ingested_at=iso_of_ch(ingested_at),
        )
        period.append(entry)
    alerts = [_alert(row) for row in db.query(_PERIOD_ALERTS, window).rows]
    digests: list[Digest] = []
    lo = hi = 0
    if period:
        lo, hi = period[0]["seq"], period[-1]["seq"]
        digests = digests_covering(db, account, lo, hi)
        if digests:
            lo, hi = min(lo, digests[0].first_seq), max(hi, digests[-1].last_seq)
    chain: list[dict[str, Any]] = [
        {
            "seq": seq,
            "event_id": event_id,
            "ingested_at": ingested_at,
            "prev_hash": prev_hash,
            "hash": h,
            "payload": payload.decode(),
        }
        for seq, event_id, prev_hash, h, ingested_at, payload, _ in (
            entries(db, account, max(lo - 1, 1), hi) if period else ()
        )
    ]
    files = {
        "events.jsonl": _jsonl(period),
        "events.csv": _csv(EVENT_COLUMNS, (flat_event(e) for e in period)),
        "alerts.jsonl": _jsonl(alerts),
        "alerts.csv": _csv(ALERT_COLUMNS, (flat_alert(a) for a in alerts)),
        "chain.jsonl": _jsonl(chain),
        "digests.jsonl": _jsonl(d.as_dict() for d in digests),
    }
    public = signer.public_pem() if signer else None
    if public:
        files["public_key.pem"] = public
    manifest = {
        "format": FORMAT,
        "account_id": account,
        "from": format_ms(start_ms),
        "to": format_ms(end_ms),
        "created_at": format_ms(created_ms),
        "events": len(period),
        "alerts": len(alerts),
        "chain_seq": [chain[0]["seq"], chain[-1]["seq"]] if chain else [],
        "key_id": signer.key_id if signer else "",
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, body in sorted(files.items()):
            bundle.writestr(name, body)
        bundle.writestr("manifest.json", manifest_bytes)
        if signer:
            sig = {
                "algorithm": signer.algorithm,
                "key_id": signer.key_id,
                "signature": signer.sign(manifest_bytes),
            }
            bundle.writestr("manifest.sig", orjson.dumps(sig))
    first, last = (int(chain[0]["seq"]), int(chain[-1]["seq"])) if chain else (0, 0)
    return BundleSummary(len(period), len(alerts), first, last, len(digests))


def _alert(row: Sequence[Any]) -> dict[str, Any]:
    alert = dict(zip(ALERT_COLUMNS, row, strict=True))
    alert["first_seen"] = iso_of_ch(alert["first_seen"])
    alert["last_seen"] = iso_of_ch(alert["last_seen"])
    alert["count"] = int(alert["count"])
    alert["evidence_event_ids"] = list(alert["evidence_event_ids"])
    alert["response"] = list(alert["response"])
    return alert
