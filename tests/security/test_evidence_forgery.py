"""Issue 15, finding 14: `evidence verify` accepted forged bundles.

The forger takes a real signed bundle, edits an event (or deletes one), re-hashes the chain from
there on so it is consistent again, rewrites events.jsonl, events.csv and the manifest's file
hashes, and drops what would expose it: `manifest.sig`, `digests.jsonl` and `public_key.pem`.
Such a bundle is consistent with itself, so only its missing signature gives it away:

- it fails by default (exit 1), naming the missing signature;
- with `--public-key` it fails always, even with `--allow-unsigned`;
- with `--allow-unsigned` alone it passes its consistency checks, and the first line says UNSIGNED.

Which event is edited or deleted, and how, comes from hypothesis (through `verify_bundle`); the
commands run for real (`python -m partnerwatch evidence verify`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import REPO_ROOT, Settings
from pipeline.event import canonical
from pipeline.forensics.digests import create_digests
from pipeline.forensics.evidence import EVENT_COLUMNS, build_bundle, flat_event
from pipeline.forensics.evidence_check import verify_bundle
from pipeline.forensics.signing import keygen, load_private
from pipeline.ledger import entry_hash, event_of
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import HOUR, T0, simulated_entries

ACCOUNT = "A0000SELLER"
START, END = T0, T0 + 2 * HOUR


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A signed bundle of a real warehouse (digests included), and the seller's public key."""
    root = tmp_path_factory.mktemp("forgery")
    keygen(root / "k.pem", root / "k.pub.pem")
    signer = load_private(root / "k.pem")
    warehouse = EmbeddedWarehouse(root / "warehouse")
    try:
        migrate(warehouse, Settings.from_env({}))
        store_events(warehouse, simulated_entries(600, seed=5))
        create_digests(warehouse, signer, "hour", T0 + 3 * HOUR, 0)
        build_bundle(warehouse, ACCOUNT, START, END, root / "case.zip", signer, T0 + 4 * HOUR)
    finally:
        warehouse.close()
    assert verify_bundle(root / "case.zip").problems == []
    yield root / "case.zip", root / "k.pub.pem"


def _read(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def _jsonl(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines()]


def forge(original: Path, out: Path, index: int, edit: str) -> Path:
    """A self-consistent forgery of `original`: event `index` of the period edited or deleted."""
    files = _read(original)
    events, chain = _jsonl(files["events.jsonl"]), _jsonl(files["chain.jsonl"])
    target = events[index % len(events)]
    at = next(i for i, link in enumerate(chain) if link["seq"] == target["seq"])
    if edit == "delete":
        del chain[at]
        events = [e for e in events if e["seq"] != target["seq"]]
    else:
        changed = dict(target)
        if edit == "ip":
            changed["source"] = {**changed.get("source", {}), "ip": "10.66.6.6"}
        else:
            changed["actor"] = {**changed["actor"], "principal_id": "someone-else"}
        chain[at] = {**chain[at], "payload": canonical(event_of(changed)).decode()}
        events = [changed if e["seq"] == target["seq"] else e for e in events]
    # re-hash the chain from the change on, renumbering after a deletion
    by_old_seq = {}
    for i in range(at, len(chain)):
        link = chain[i]
        old_seq = link["seq"]
        link["seq"] = chain[i - 1]["seq"] + 1 if i else link["seq"]
        link["prev_hash"] = chain[i - 1]["hash"] if i else link["prev_hash"]
        link["hash"] = entry_hash(
            link["prev_hash"], link["seq"], link["ingested_at"], link["payload"].encode()
        )
        by_old_seq[old_seq] = link
    for entry in events:
        link = by_old_seq.get(entry["seq"])
        if link is not None:
            entry.update(seq=link["seq"], prev_hash=link["prev_hash"], hash=link["hash"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EVENT_COLUMNS)
    writer.writerows(flat_event(e) for e in events)
    files["events.jsonl"] = b"".join(orjson.dumps(e) + b"\n" for e in events)
    files["events.csv"] = buffer.getvalue().encode()
    files["chain.jsonl"] = b"".join(orjson.dumps(link) + b"\n" for link in chain)
    for name in ("manifest.sig", "digests.jsonl", "public_key.pem"):
        files.pop(name, None)
    manifest = orjson.loads(files["manifest.json"])
    manifest.update(
        events=len(events),
        key_id="",
        chain_seq=[chain[0]["seq"], chain[-1]["seq"]],
        files={
            n: hashlib.sha256(b).hexdigest()
            for n, b in sorted(files.items())
            if n != "manifest.json"
        },
    )
    files["manifest.json"] = orjson.dumps(
        manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
    )
    with zipfile.ZipFile(out, "w") as bundle:
        for name, body in sorted(files.items()):
            bundle.writestr(name, body)
    return out


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")} | {
        "PW_WEB_PORT": "9",
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", "evidence", "verify", *map(str, args)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(min_value=0, max_value=10_000),
    edit=st.sampled_from(["ip", "principal", "delete"]),
)
def test_a_forged_bundle_without_its_signature_fails(
    signed: tuple[Path, Path], tmp_path: Path, index: int, edit: str
) -> None:
    original, public_key = signed
    forged = forge(original, tmp_path / f"forged-{edit}-{index}.zip", index, edit)
    default = verify_bundle(forged).problems
    assert default and default[0].startswith("manifest.sig is missing: the bundle is not signed")
    consistent = verify_bundle(forged, allow_unsigned=True)
    assert consistent.problems == [], (
        "the forgery must be consistent, else this test proves nothing"
    )
    assert consistent.unsigned and consistent.notes[0].startswith("UNSIGNED")
    pinned = verify_bundle(forged, public_key.read_bytes(), allow_unsigned=True)
    assert any("not signed by the given public key" in p for p in pinned.problems)


@pytest.mark.parametrize("edit", ["ip", "delete"])
def test_the_command_refuses_a_forged_bundle(
    signed: tuple[Path, Path], tmp_path: Path, edit: str
) -> None:
    original, public_key = signed
    forged = forge(original, tmp_path / "forged.zip", 7, edit)

    plain = cli(forged)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert (
        "manifest.sig is missing" in " ".join(plain.stderr.split())
        and "does NOT verify" in plain.stderr
    )

    pinned = cli(forged, "--public-key", public_key)
    assert pinned.returncode == 1, pinned.stdout + pinned.stderr
    assert "not signed by the given public key" in " ".join(pinned.stderr.split())
    pinned_allowed = cli(forged, "--public-key", public_key, "--allow-unsigned")
    assert pinned_allowed.returncode == 1, pinned_allowed.stdout + pinned_allowed.stderr

    allowed = cli(forged, "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert allowed.stdout.splitlines()[0].startswith("UNSIGNED"), allowed.stdout
    assert "forged.zip is consistent, but UNSIGNED" in " ".join(allowed.stdout.split())


def test_the_genuine_bundle_still_verifies_by_the_command(signed: tuple[Path, Path]) -> None:
    original, public_key = signed
    done = cli(original, "--public-key", public_key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "UNSIGNED" not in done.stdout and "case.zip verifies" in done.stdout
