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
`verify_bundle` refuses a bundle whose manifest signature it could not check (none, or no key to
check it with) unless asked with `allow_unsigned`, and then reports it `unsigned`; with a pinned
public key, a missing signature is always a problem.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.event import canonical, format_ms
from pipeline.forensics.chain_check import SqlReader, ch_ms, entries, iso_of_ch
from pipeline.forensics.digests import Digest, Problem, check_digest_chain, digests_covering
from pipeline.forensics.signing import Signer, SigningKeyError, Verifier, load_public
from pipeline.ledger import GENESIS, event_of

FORMAT = "partnerwatch-evidence/1"
EVENT_COLUMNS = (
    "event_id", "account_id", "seq", "occurred_at", "ingested_at", "action", "marketplace", "actor_type",
    "provider_id", "principal_id", "source_ip", "user_agent", "session_id", "operation", "resource_type",
    "resource_id", "outcome", "approval_id", "amount_value", "amount_currency", "changes", "prev_hash", "hash",
)
ALERT_COLUMNS = (
    "alert_id", "detector", "severity", "account_id", "provider_id", "principal_id", "title", "summary",
    "evidence_event_ids", "first_seen", "last_seen", "count", "response",
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
        entry["event_id"], entry["account_id"], str(entry["seq"]), entry["occurred_at"], entry["ingested_at"],
        entry["action"], entry.get("marketplace", ""), actor["type"], actor.get("provider_id", ""),
        actor["principal_id"], source.get("ip", ""), source.get("user_agent", ""), source.get("session_id", ""),
        entry.get("operation", ""), resource.get("type", ""), resource.get("id", ""), entry["outcome"],
        entry.get("approval_id", ""), amount.get("value", ""), amount.get("currency", ""),
        orjson.dumps(changes).decode() if changes is not None else "", entry["prev_hash"], entry["hash"],
    ]


def flat_alert(alert: dict[str, Any]) -> list[str]:
    return [
        orjson.dumps(alert[c]).decode() if isinstance(alert[c], list) else str(alert[c]) for c in ALERT_COLUMNS
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
    db: SqlReader, account: str, start_ms: int, end_ms: int, out: Path, signer: Signer | None, created_ms: int
) -> BundleSummary:
    """Write the bundle for `account`'s events with `start_ms <= occurred_at < end_ms` to `out`."""
    window = {"account": account, "start": ch_ms(start_ms), "end": ch_ms(end_ms)}
    period = []
    for seq, ingested_at, prev_hash, entry_hash_, payload in db.query(_PERIOD_EVENTS, window).rows:
        entry = orjson.loads(payload)
        entry.update(seq=int(seq), prev_hash=str(prev_hash), hash=str(entry_hash_), ingested_at=iso_of_ch(ingested_at))
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
        {"seq": seq, "event_id": event_id, "ingested_at": ingested_at, "prev_hash": prev_hash, "hash": h,
         "payload": payload.decode()}
        for seq, event_id, prev_hash, h, ingested_at, payload, _ in (entries(db, account, max(lo - 1, 1), hi) if period else ())
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
            sig = {"algorithm": signer.algorithm, "key_id": signer.key_id, "signature": signer.sign(manifest_bytes)}
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


# -- verifying ------------------------------------------------------------------------------------


@dataclass
class BundleReport:
    """Problems (the bundle does not verify) and notes (what was checked, what is not covered)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the manifest's signature was not checked (none, or no key) and `allow_unsigned` let it pass
    unsigned: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


class _Stop(Exception):
    """The bundle cannot be read further."""


UNSIGNED_NOTE = (
    "UNSIGNED: manifest.json carries no signature this check could verify, so anyone could have "
    "written this bundle; only its internal consistency was checked"
)


def verify_bundle(
    path: Path,
    public_key: bytes | None = None,
    hmac_verifier: Verifier | None = None,
    *,
    allow_unsigned: bool = False,
) -> BundleReport:
    """Check a bundle offline. `public_key` pins the signer (else the bundle's own key is used).

    An unsigned bundle (no `manifest.sig`, or one no key here can check) is a problem, unless
    `allow_unsigned` (then `report.unsigned` and the first note say so); with `public_key`, it is
    a problem always.
    """
    report = BundleReport()
    try:
        files, manifest = _read(path, report)
        before = len(report.problems)
        verifier = _choose_key(files, manifest, public_key, hmac_verifier, report)
        if verifier is not None or len(report.problems) == before:  # else: no usable key, already a problem
            _check_signature(files, verifier, public_key is not None, allow_unsigned, report)
        chain = _check_chain(files, report)
        _check_events(files, manifest, chain, report)
        _check_table(files, "alerts", ALERT_COLUMNS, flat_alert, report)
        _check_digests(files, manifest, chain, verifier, report)
    except _Stop:
        pass
    return report


def _check_signature(
    files: dict[str, bytes], verifier: Verifier | None, pinned: bool, allow_unsigned: bool, report: BundleReport
) -> None:
    """The manifest's signature: verified, wrong (a problem), or not checked (see `verify_bundle`)."""
    if verifier is not None and "manifest.sig" in files:
        try:
            sig = _json(files["manifest.sig"], "manifest.sig")
            wrong = verifier.verify(
                files["manifest.json"], str(sig.get("signature", "")), str(sig.get("algorithm")), str(sig.get("key_id"))
            )
        except (ValueError, AttributeError):
            wrong = "not a signature record"
        if wrong:
            report.problems.append(f"manifest.sig: {wrong}")
        return
    if "manifest.sig" not in files:
        reason = "manifest.sig is missing: the bundle is not signed"
    else:
        reason = "manifest.sig cannot be checked: the bundle names no key and none was given"
    if pinned:
        report.problems.append(f"{reason}, so it is not signed by the given public key")
    elif allow_unsigned:
        report.unsigned = True
        report.notes.insert(0, UNSIGNED_NOTE)
    else:
        report.problems.append(
            f"{reason}: anyone could have written it (an edited event and a re-hashed chain look consistent);"
            " pass --allow-unsigned to check its internal consistency only"
        )


def _read(path: Path, report: BundleReport) -> tuple[dict[str, bytes], dict[str, Any]]:
    try:
        with zipfile.ZipFile(path) as bundle:
            files = {name: bundle.read(name) for name in bundle.namelist()}
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"{path.name}: not a readable zip ({exc})")
        raise _Stop from None
    if "manifest.json" not in files:
        report.problems.append("manifest.json is missing")
        raise _Stop
    manifest = _json(files["manifest.json"], "manifest.json", report)
    listed: dict[str, str] = manifest.get("files", {})
    for name in sorted(set(files) - set(listed) - {"manifest.json", "manifest.sig"}):
        report.problems.append(f"{name}: not listed in manifest.json")
    for name, digest in sorted(listed.items()):
        if name not in files:
            report.problems.append(f"{name}: listed in manifest.json but missing from the bundle")
        elif hashlib.sha256(files[name]).hexdigest() != digest:
            report.problems.append(f"{name}: SHA-256 does not match manifest.json (the file was changed)")
    return files, manifest


def _json(body: bytes, name: str, report: BundleReport | None = None) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if report is not None:
            report.problems.append(f"{name}: not valid JSON")
            raise _Stop from None
        raise ValueError(f"{name}: not valid JSON") from None


def _lines(files: dict[str, bytes], name: str, report: BundleReport) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(files.get(name, b"").splitlines(), 1):
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            report.problems.append(f"{name} line {number}: not valid JSON")
    return out


def _choose_key(
    files: dict[str, bytes], manifest: dict[str, Any], public_key: bytes | None, hmac_verifier: Verifier | None,
    report: BundleReport,
) -> Verifier | None:
    key_id = manifest.get("key_id", "")
    if public_key is not None:
        verifier = load_public(public_key, "given public key")
    elif "public_key.pem" in files:
        try:
            verifier = load_public(files["public_key.pem"], "public_key.pem")
        except SigningKeyError as exc:
            report.problems.append(f"public_key.pem: {exc}")
            return None
        report.notes.append(
            f"signatures checked with the bundle's own public key {verifier.key_id}: compare it with the key "
            "the seller published, or pass --public-key"
        )
    elif hmac_verifier is not None:
        verifier = hmac_verifier
    else:
        if key_id:
            report.problems.append(f"signed with {key_id}: give the HMAC key to check the signatures")
        return None
    if key_id and verifier.key_id != key_id:
        report.problems.append(f"manifest.json: signed with key {key_id}, not {verifier.key_id}")
    return verifier


def _check_chain(files: dict[str, bytes], report: BundleReport) -> dict[int, dict[str, Any]]:
    """Recompute chain.jsonl; return its entries by seq."""
    from pipeline.ledger import entry_hash

    chain: dict[int, dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    for number, link in enumerate(_lines(files, "chain.jsonl", report), 1):
        where = f"chain.jsonl line {number} (seq {link.get('seq')}, event {link.get('event_id')})"
        try:
            seq, prev_hash, stored = int(link["seq"]), str(link["prev_hash"]), str(link["hash"])
            recomputed = entry_hash(prev_hash, seq, str(link["ingested_at"]), str(link["payload"]).encode())
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"{where}: missing or malformed fields")
            continue
        if previous is None and seq == 1 and prev_hash != GENESIS:
            report.problems.append(f"{where}: the first entry does not start from genesis")
        if previous is not None:
            if seq != previous["seq"] + 1:
                report.problems.append(f"{where}: expected seq {previous['seq'] + 1} (an entry was removed or added)")
            elif prev_hash != previous["hash"]:
                report.problems.append(f"{where}: prev_hash does not match the previous entry's hash")
        if recomputed != stored:
            report.problems.append(f"{where}: hash does not match its payload (the entry was changed)")
        chain[seq] = {**link, "seq": seq}
        previous = chain[seq]
    return chain


def _check_events(
    files: dict[str, bytes], manifest: dict[str, Any], chain: dict[int, dict[str, Any]], report: BundleReport
) -> None:
    from pipeline.ledger import entry_hash

    start, end = str(manifest.get("from", "")), str(manifest.get("to", ""))
    account = manifest.get("account_id")
    period = _lines(files, "events.jsonl", report)
    listed = set()
    for number, entry in enumerate(period, 1):
        where = f"events.jsonl line {number} (event {entry.get('event_id')})"
        try:
            seq = int(entry["seq"])
            recomputed = entry_hash(str(entry["prev_hash"]), seq, str(entry["ingested_at"]), canonical(event_of(entry)))
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"{where}: missing or malformed fields")
            continue
        listed.add(seq)
        link = chain.get(seq)
        if recomputed != entry.get("hash") or link is None or link["hash"] != recomputed:
            report.problems.append(f"{where}: does not match the chain at seq {seq} (the event was changed)")
        if entry.get("account_id") != account or not start <= str(entry.get("occurred_at")) < end:
            report.problems.append(f"{where}: not an event of account {account} between {start} and {end}")
    for seq, link in sorted(chain.items()):
        try:
            payload = orjson.loads(link["payload"])
        except orjson.JSONDecodeError:
            continue  # reported by the chain check
        if start <= str(payload.get("occurred_at")) < end and seq not in listed:
            report.problems.append(f"events.jsonl: event {link['event_id']} (seq {seq}) of the period is missing")
    if manifest.get("events") != len(period):
        report.problems.append(f"events.jsonl: {len(period)} events, manifest.json says {manifest.get('events')}")
    _check_table(files, "events", EVENT_COLUMNS, flat_event, report)
    report.notes.append(f"{len(period)} events of the period recomputed into a chain of {len(chain)} entries")


def _check_table(files: dict[str, bytes], stem: str, columns: Sequence[str], flat: Any, report: BundleReport) -> None:
    docs = _lines(files, f"{stem}.jsonl", report)
    rows = _csv_rows(files, f"{stem}.csv", report)
    try:
        expected = [flat(d) for d in docs]
    except (KeyError, TypeError):
        report.problems.append(f"{stem}.jsonl: missing fields")
        return
    if rows is not None and rows != [tuple(columns), *(tuple(r) for r in expected)]:
        report.problems.append(f"{stem}.csv: {_first_difference(rows, columns, expected)}")


def _csv_rows(files: dict[str, bytes], name: str, report: BundleReport) -> list[tuple[str, ...]] | None:
    if name not in files:
        return None
    try:
        return [tuple(r) for r in csv.reader(io.StringIO(files[name].decode()))]
    except (UnicodeDecodeError, csv.Error):
        report.problems.append(f"{name}: not readable CSV")
        return None


def _first_difference(rows: list[tuple[str, ...]], columns: Sequence[str], expected: list[list[str]]) -> str:
    if not rows or rows[0] != tuple(columns):
        return "the header differs"
    for number, (got, want) in enumerate(zip(rows[1:], expected, strict=False), 2):
        if got != tuple(want):
            return f"line {number} differs from the JSON Lines file (id {want[0]})"
    return f"{len(rows) - 1} rows where the JSON Lines file has {len(expected)}"


def _check_digests(
    files: dict[str, bytes], manifest: dict[str, Any], chain: dict[int, dict[str, Any]], verifier: Verifier | None,
    report: BundleReport,
) -> None:
    try:
        digests = [Digest.from_dict(d) for d in _lines(files, "digests.jsonl", report)]
    except (KeyError, TypeError, ValueError):
        report.problems.append("digests.jsonl: missing or malformed fields")
        return
    account = str(manifest.get("account_id"))
    if verifier is not None:
        problems: list[Problem] = check_digest_chain(account, digests, verifier, from_genesis=False)
        report.problems += [f"digests.jsonl: {p.message}" for p in problems]
    for d in digests:
        link = chain.get(d.last_seq)
        if d.account_id != account:
            report.problems.append(f"digests.jsonl: digest seq {d.first_seq}-{d.last_seq} is of account {d.account_id}")
        elif link is None or link["hash"] != d.head_hash:
            report.problems.append(
                f"digests.jsonl: the signed head of seq {d.last_seq} is not the chain's (chain.jsonl was rewritten)"
            )
    signed_to = max((d.last_seq for d in digests), default=0)
    unsigned = [s for s in chain if s > signed_to]
    if unsigned:
        report.notes.append(
            f"entries seq {min(unsigned)}..{max(unsigned)} are not covered by a signed digest yet (chain-verified only)"
        )
    elif digests:
        report.notes.append(f"every entry is covered by {len(digests)} signed digests")
