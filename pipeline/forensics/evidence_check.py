"""Checking an evidence bundle offline (the format is evidence.py's): `verify_bundle`.

Every file is checked against the manifest's SHA-256 and the manifest against its signature; the
chain is recomputed entry by entry, the period's events against it, the CSV files against their
JSON Lines twins, and the signed digests' heads against the chain. Without a signature it could
check, `verify_bundle` refuses the bundle unless asked with `allow_unsigned` (see evidence.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.event import canonical
from pipeline.forensics.digest_verification import check_digest_chain
from pipeline.forensics.digests import Digest, Problem
from pipeline.forensics.evidence import ALERT_COLUMNS, EVENT_COLUMNS, flat_alert, flat_event
from pipeline.forensics.signing import SigningKeyError, Verifier, load_public
from pipeline.ledger import GENESIS, event_of


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
        if (
            verifier is not None or len(report.problems) == before
        ):  # else: no usable key, already a problem
            _check_signature(files, verifier, public_key is not None, allow_unsigned, report)
        chain = _check_chain(files, report)
        _check_events(files, manifest, chain, report)
        _check_table(files, "alerts", ALERT_COLUMNS, flat_alert, report)
        _check_digests(files, manifest, chain, verifier, report)
    except _Stop:
        pass
    return report


def _check_signature(
    files: dict[str, bytes],
    verifier: Verifier | None,
    pinned: bool,
    allow_unsigned: bool,
    report: BundleReport,
) -> None:
    """The manifest's signature: verified, wrong (a problem), or not checked (see `verify_bundle`)."""
    if verifier is not None and "manifest.sig" in files:
        try:
            sig = _json(files["manifest.sig"], "manifest.sig")
            wrong = verifier.verify(
                files["manifest.json"],
                str(sig.get("signature", "")),
                str(sig.get("algorithm")),
                str(sig.get("key_id")),
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
            report.problems.append(
                f"{name}: SHA-256 does not match manifest.json (the file was changed)"
            )
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
    files: dict[str, bytes],
    manifest: dict[str, Any],
    public_key: bytes | None,
    hmac_verifier: Verifier | None,
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
            report.problems.append(
                f"signed with {key_id}: give the HMAC key to check the signatures"
            )
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
            recomputed = entry_hash(
                prev_hash, seq, str(link["ingested_at"]), str(link["payload"]).encode()
            )
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"{where}: missing or malformed fields")
            continue
        if previous is None and seq == 1 and prev_hash != GENESIS:
            report.problems.append(f"{where}: the first entry does not start from genesis")
        if previous is not None:
            if seq != previous["seq"] + 1:
                report.problems.append(
                    f"{where}: expected seq {previous['seq'] + 1} (an entry was removed or added)"
                )
            elif prev_hash != previous["hash"]:
                report.problems.append(
                    f"{where}: prev_hash does not match the previous entry's hash"
                )
        if recomputed != stored:
            report.problems.append(
                f"{where}: hash does not match its payload (the entry was changed)"
            )
        chain[seq] = {**link, "seq": seq}
        previous = chain[seq]
    return chain


def _check_events(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    chain: dict[int, dict[str, Any]],
    report: BundleReport,
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
            recomputed = entry_hash(
                str(entry["prev_hash"]), seq, str(entry["ingested_at"]), canonical(event_of(entry))
            )
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"{where}: missing or malformed fields")
            continue
        listed.add(seq)
        link = chain.get(seq)
        if recomputed != entry.get("hash") or link is None or link["hash"] != recomputed:
            report.problems.append(
                f"{where}: does not match the chain at seq {seq} (the event was changed)"
            )
        if entry.get("account_id") != account or not start <= str(entry.get("occurred_at")) < end:
            report.problems.append(
                f"{where}: not an event of account {account} between {start} and {end}"
            )
    for seq, link in sorted(chain.items()):
        try:
            payload = orjson.loads(link["payload"])
        except orjson.JSONDecodeError:
            continue  # reported by the chain check
        if start <= str(payload.get("occurred_at")) < end and seq not in listed:
            report.problems.append(
                f"events.jsonl: event {link['event_id']} (seq {seq}) of the period is missing"
            )
    if manifest.get("events") != len(period):
        report.problems.append(
            f"events.jsonl: {len(period)} events, manifest.json says {manifest.get('events')}"
        )
    _check_table(files, "events", EVENT_COLUMNS, flat_event, report)
    report.notes.append(
        f"{len(period)} events of the period recomputed into a chain of {len(chain)} entries"
    )


def _check_table(
    files: dict[str, bytes], stem: str, columns: Sequence[str], flat: Any, report: BundleReport
) -> None:
    docs = _lines(files, f"{stem}.jsonl", report)
    rows = _csv_rows(files, f"{stem}.csv", report)
    try:
        expected = [flat(d) for d in docs]
    except (KeyError, TypeError):
        report.problems.append(f"{stem}.jsonl: missing fields")
        return
    if rows is not None and rows != [tuple(columns), *(tuple(r) for r in expected)]:
        report.problems.append(f"{stem}.csv: {_first_difference(rows, columns, expected)}")


def _csv_rows(
    files: dict[str, bytes], name: str, report: BundleReport
) -> list[tuple[str, ...]] | None:
    if name not in files:
        return None
    try:
        return [tuple(r) for r in csv.reader(io.StringIO(files[name].decode()))]
    except (UnicodeDecodeError, csv.Error):
        report.problems.append(f"{name}: not readable CSV")
        return None


def _first_difference(
    rows: list[tuple[str, ...]], columns: Sequence[str], expected: list[list[str]]
) -> str:
    if not rows or rows[0] != tuple(columns):
        return "the header differs"
    for number, (got, want) in enumerate(zip(rows[1:], expected, strict=False), 2):
        if got != tuple(want):
            return f"line {number} differs from the JSON Lines file (id {want[0]})"
    return f"{len(rows) - 1} rows where the JSON Lines file has {len(expected)}"


def _check_digests(
    files: dict[str, bytes],
    manifest: dict[str, Any],
    chain: dict[int, dict[str, Any]],
    verifier: Verifier | None,
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
            report.problems.append(
                f"digests.jsonl: digest seq {d.first_seq}-{d.last_seq} is of account {d.account_id}"
            )
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
