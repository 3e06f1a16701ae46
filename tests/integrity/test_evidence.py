"""Evidence bundles from the real embedded warehouse: they verify offline, and any edit (one byte, a
line, a removed event, a rewritten and re-hashed chain) fails naming what broke."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import REPO_ROOT
from pipeline.event import timestamp_ms
from pipeline.forensics.digests import create_digests
from pipeline.forensics.evidence import EVENT_COLUMNS, build_bundle
from pipeline.forensics.evidence_check import verify_bundle
from pipeline.forensics.signing import Signer, hmac_signer, keygen, load_private
from sinks.clickhouse import EmbeddedWarehouse
from tests.integrity.conftest import HOUR, T0

Seeded = tuple[EmbeddedWarehouse, list[dict[str, Any]]]
ACCOUNT = "A0000SELLER"
START, END = T0 + HOUR // 2, T0 + HOUR + HOUR // 2  # 06:30 to 07:30, event time


@pytest.fixture()
def signer(tmp_path: Path) -> Signer:
    keygen(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    return load_private(tmp_path / "k.pem")


@pytest.fixture()
def bundle(seeded: Seeded, signer: Signer, tmp_path: Path) -> Path:
    wh, _ = seeded
    create_digests(wh, signer, "hour", T0 + 3 * HOUR, 0)
    out = tmp_path / "case.zip"
    build_bundle(wh, ACCOUNT, START, END, out, signer, T0 + 4 * HOUR)
    return out


def period_events(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if e["account_id"] == ACCOUNT and START <= timestamp_ms(e["occurred_at"], "t") < END
    ]


def rewrite(
    path: Path, name: str, edit: Callable[[bytes], bytes], *, fix_manifest: bool = False
) -> None:
    """Replace one file of the zip; with `fix_manifest`, also update its SHA-256 (a careful forger)."""
    with zipfile.ZipFile(path) as old:
        files = {n: old.read(n) for n in old.namelist()}
    files[name] = edit(files[name])
    if fix_manifest:
        manifest = orjson.loads(files["manifest.json"])
        manifest["files"][name] = hashlib.sha256(files[name]).hexdigest()
        files["manifest.json"] = orjson.dumps(
            manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
        )
    with zipfile.ZipFile(path, "w") as new:
        for n, body in files.items():
            new.writestr(n, body)


def test_bundle_holds_the_period_and_verifies(seeded: Seeded, bundle: Path, signer: Signer) -> None:
    _, entries = seeded
    expected = period_events(entries)
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        events = [orjson.loads(line) for line in z.read("events.jsonl").splitlines()]
        rows = list(csv.reader(io.StringIO(z.read("events.csv").decode())))
        chain = [orjson.loads(line) for line in z.read("chain.jsonl").splitlines()]
        digests = [orjson.loads(line) for line in z.read("digests.jsonl").splitlines()]
        manifest = orjson.loads(z.read("manifest.json"))
        alerts = [orjson.loads(line) for line in z.read("alerts.jsonl").splitlines()]
    assert names == {
        "events.jsonl",
        "events.csv",
        "alerts.jsonl",
        "alerts.csv",
        "chain.jsonl",
        "digests.jsonl",
        "public_key.pem",
        "manifest.json",
        "manifest.sig",
    }
    assert sorted(manifest["files"]) == sorted(names - {"manifest.json", "manifest.sig"})
    assert events == sorted(expected, key=lambda e: e["seq"])  # the ledger entries, exactly
    assert rows[0] == list(EVENT_COLUMNS) and [r[0] for r in rows[1:]] == [
        e["event_id"] for e in events
    ]
    assert manifest["events"] == len(expected) > 50 and manifest["key_id"] == signer.key_id
    # The chain proof runs from the anchor before the first event to the last signed head.
    assert chain[0]["seq"] == max(
        min(min(e["seq"] for e in events), digests[0]["first_seq"]) - 1, 1
    )
    assert [c["seq"] for c in chain] == list(range(chain[0]["seq"], chain[-1]["seq"] + 1))
    assert chain[-1]["seq"] == digests[-1]["last_seq"]
    assert all(a["account_id"] == ACCOUNT for a in alerts)

    report = verify_bundle(bundle)
    assert report.problems == []
    assert any("every entry is covered by" in n for n in report.notes)
    assert any("the bundle's own public key" in n for n in report.notes)


@pytest.mark.parametrize(
    "name",
    ["events.csv", "events.jsonl", "chain.jsonl", "digests.jsonl", "alerts.csv", "public_key.pem"],
)
def test_one_changed_byte_fails_naming_the_file(bundle: Path, name: str) -> None:
    def flip(body: bytes) -> bytes:
        at = len(body) // 2
        return body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]

    rewrite(bundle, name, flip)
    report = verify_bundle(bundle)
    assert f"{name}: SHA-256 does not match manifest.json (the file was changed)" in report.problems


def test_an_edited_event_fails_even_with_a_fixed_manifest(bundle: Path, tmp_path: Path) -> None:
    def edit(body: bytes) -> bytes:
        lines = body.splitlines()
        doc = orjson.loads(lines[5])
        doc["source"] = {**doc.get("source", {}), "ip": "10.9.9.9"}
        lines[5] = orjson.dumps(doc)
        return b"\n".join(lines) + b"\n"

    rewrite(bundle, "events.jsonl", edit, fix_manifest=True)
    problems = verify_bundle(bundle).problems
    assert "manifest.sig: bad signature" in problems
    assert any(
        p.startswith("events.jsonl line 6 (event ") and "does not match the chain" in p
        for p in problems
    )
    assert any(p.startswith("events.csv: line 7 differs") for p in problems)


def test_a_removed_event_fails(bundle: Path, tmp_path: Path) -> None:
    removed: list[str] = []

    def drop(body: bytes) -> bytes:
        lines = body.splitlines()
        removed.append(orjson.loads(lines[10])["event_id"])
        return b"\n".join(lines[:10] + lines[11:]) + b"\n"

    rewrite(bundle, "events.jsonl", drop, fix_manifest=True)
    problems = verify_bundle(bundle).problems
    assert any(
        p.startswith(f"events.jsonl: event {removed[0]} (seq ")
        and p.endswith("of the period is missing")
        for p in problems
    )
    assert any("manifest.json says" in p for p in problems)


def test_a_rehashed_chain_fails_against_the_signed_digests(bundle: Path) -> None:
    """The forger removes an entry from chain.jsonl and re-hashes the rest: digests still catch it."""
    from pipeline.ledger import entry_hash

    def rechain(body: bytes) -> bytes:
        links = [orjson.loads(line) for line in body.splitlines()]
        del links[20]
        for i in range(20, len(links)):
            links[i]["seq"] = links[i - 1]["seq"] + 1
            links[i]["prev_hash"] = links[i - 1]["hash"]
            links[i]["hash"] = entry_hash(
                links[i]["prev_hash"],
                links[i]["seq"],
                links[i]["ingested_at"],
                links[i]["payload"].encode(),
            )
        return b"".join(orjson.dumps(link) + b"\n" for link in links)

    rewrite(bundle, "chain.jsonl", rechain, fix_manifest=True)
    problems = verify_bundle(bundle).problems
    assert any("is not the chain's (chain.jsonl was rewritten)" in p for p in problems)
    assert any("does not match the chain at seq" in p for p in problems)


def test_a_pinned_public_key_must_match(bundle: Path, tmp_path: Path) -> None:
    keygen(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    problems = verify_bundle(bundle, (tmp_path / "other.pub.pem").read_bytes()).problems
    assert any(p.startswith("manifest.json: signed with key") for p in problems)
    assert verify_bundle(bundle, (tmp_path / "k.pub.pem").read_bytes()).problems == []


def test_hmac_bundle_and_unsigned_bundle(seeded: Seeded, tmp_path: Path) -> None:
    wh, _ = seeded
    key = hmac_signer("h" * 32)
    create_digests(wh, key, "hour", T0 + 3 * HOUR, 0)
    signed = tmp_path / "hmac.zip"
    build_bundle(wh, ACCOUNT, START, END, signed, key, T0 + 4 * HOUR)
    assert verify_bundle(signed, hmac_verifier=key.verifier()).problems == []
    assert any("give the HMAC key" in p for p in verify_bundle(signed).problems)

    unsigned = tmp_path / "plain.zip"
    build_bundle(wh, ACCOUNT, START, END, unsigned, None, T0 + 4 * HOUR)
    assert any(p.startswith("manifest.sig is missing") for p in verify_bundle(unsigned).problems)
    report = verify_bundle(
        unsigned, allow_unsigned=True
    )  # hashes and the chain verify; no signature to check
    assert report.problems == [] and report.unsigned and report.notes[0].startswith("UNSIGNED")


def test_cli_evidence_and_verify(seeded: Seeded, tmp_path: Path) -> None:
    wh, _ = seeded
    data_dir = wh.path.parent
    wh.close()
    keygen(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update(
        {
            "PW_DATA_DIR": str(data_dir),
            "PW_WEB_PORT": "9",
            "PW_DIGEST_KEY_FILE": str(tmp_path / "k.pem"),
            "PW_DIGEST_DELAY": "0",
        }
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "partnerwatch", *args],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )

    assert cli("digest", "create", "--period", "day").returncode == 0
    out = tmp_path / "case" / "case.zip"
    made = cli(
        "evidence",
        "--account",
        ACCOUNT,
        "--from",
        "2026-11-02T06:30:00Z",
        "--to",
        "2026-11-02T07:30:00Z",
        "--out",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    assert "manifest signed with ed25519:" in " ".join(made.stdout.split())
    ok = cli("evidence", "verify", str(out), "--public-key", str(tmp_path / "k.pub.pem"))
    assert ok.returncode == 0, ok.stderr
    assert "case.zip verifies" in " ".join(ok.stdout.split())

    rewrite(out, "events.csv", lambda b: b.replace(b"listing.price_change", b"listing.update", 1))
    bad = cli("evidence", "verify", str(out))
    assert bad.returncode == 1
    text = " ".join(bad.stderr.split())
    assert "events.csv: SHA-256 does not match manifest.json" in text and "does NOT verify" in text
    missing = cli("evidence", "--account", ACCOUNT)
    assert missing.returncode == 2


def test_a_later_period_starts_from_an_anchor(
    seeded: Seeded, signer: Signer, tmp_path: Path
) -> None:
    wh, entries = seeded
    create_digests(wh, signer, "hour", T0 + 3 * HOUR, 0)
    out = tmp_path / "late.zip"
    summary = build_bundle(
        wh, ACCOUNT, T0 + HOUR + 10 * 60_000, T0 + HOUR + 30 * 60_000, out, signer, T0 + 4 * HOUR
    )
    second_hour = [
        e for e in entries if e["account_id"] == ACCOUNT and e["ingested_at"] >= "2026-11-02T07"
    ]
    assert summary.digests == 1
    assert (
        summary.chain_from == second_hour[0]["seq"] - 1 > 1
    )  # the anchor: last entry of the 06:00 digest
    assert verify_bundle(out).problems == []


def test_an_unreadable_bundle_key_is_a_problem_not_a_crash(bundle: Path) -> None:
    rewrite(
        bundle,
        "public_key.pem",
        lambda b: b.replace(b"MCowBQYDK2VwAyEA", b"MCowBQYDK2VwAyEB"),
        fix_manifest=True,
    )
    problems = verify_bundle(bundle).problems
    assert any(p.startswith("public_key.pem: cannot load the public_key.pem") for p in problems)
