"""Signed chain digests on the real embedded warehouse: created once per closed period, chained,
verified with the public key alone; a rewritten (re-hashed) history or a dropped tail fails."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import REPO_ROOT
from pipeline.event import timestamp_ms
from pipeline.forensics.digest_verification import verify_digests
from pipeline.forensics.digests import Digest, create_digests, stored_digests
from pipeline.forensics.signing import (
    SigningKeyError,
    hmac_signer,
    keygen,
    load_private,
    load_public,
)
from pipeline.ledger import GENESIS, ChainHead, append, event_of
from sinks.audit_store import event_row
from sinks.clickhouse import EmbeddedWarehouse
from tests.integrity.conftest import HOUR, T0

Seeded = tuple[EmbeddedWarehouse, list[dict[str, Any]]]
LATER = T0 + 10 * HOUR  # every simulated hour is closed by then


@pytest.fixture()
def ed25519(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "digest.pem", tmp_path / "keys" / "digest.pub.pem"
    keygen(private, public)
    return private, public


def test_keygen_writes_a_private_key_only_the_owner_reads(ed25519: tuple[Path, Path]) -> None:
    private, public = ed25519
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signer, verifier = load_private(private), load_public(public.read_bytes())
    assert signer.key_id == verifier.key_id and signer.key_id.startswith("ed25519:")
    assert "PRIVATE" not in repr(signer) and "PRIVATE" not in repr(verifier)
    with pytest.raises(FileExistsError):
        keygen(private, public)  # never overwritten
    with pytest.raises(SigningKeyError):
        load_private(public)
    with pytest.raises(SigningKeyError):
        hmac_signer("short")


def test_digests_cover_closed_hours_once_and_verify(
    seeded: Seeded, ed25519: tuple[Path, Path]
) -> None:
    wh, entries = seeded
    signer = load_private(ed25519[0])
    # At 07:30 with no delay only the 06:00 hour is closed.
    made, problems = create_digests(wh, signer, "hour", T0 + HOUR + HOUR // 2, 0)
    assert problems == []
    first_hour = {
        a: [e for e in entries if e["account_id"] == a and e["ingested_at"] < "2026-11-02T07:00"]
        for a in ("A0000SELLER", "A0001SELLER")
    }
    assert sorted((d.account_id, d.first_seq, d.last_seq, d.head_hash) for d in made) == sorted(
        (a, 1, es[-1]["seq"], es[-1]["hash"]) for a, es in first_hour.items()
    )
    assert all(
        d.prev_digest_hash == GENESIS and d.period_start == "2026-11-02T06:00:00.000Z" for d in made
    )

    hours = {(e["account_id"], e["ingested_at"][:13]) for e in entries}
    made, problems = create_digests(wh, signer, "hour", LATER, 0)
    assert problems == [] and len(made) == len(hours) - 2  # one per account and hour with events
    assert create_digests(wh, signer, "hour", LATER, 0) == ([], [])  # idempotent

    for account in ("A0000SELLER", "A0001SELLER"):
        chain = stored_digests(wh, account)
        mine = [e for e in entries if e["account_id"] == account]
        assert chain[-1].last_seq == len(mine) and chain[-1].head_hash == mine[-1]["hash"]
        for before, after in pairwise(chain):
            assert (
                after.prev_digest_hash == before.digest_hash
                and after.first_seq == before.last_seq + 1
            )

    report = verify_digests(wh, load_public(ed25519[1].read_bytes()))
    assert report.problems == []
    assert (report.accounts, report.digests, report.events) == (2, len(hours), len(entries))


def test_a_period_is_digested_only_after_the_delay(seeded: Seeded) -> None:
    wh, _ = seeded
    signer = hmac_signer("k" * 32)
    made, _ = create_digests(wh, signer, "hour", T0 + HOUR + 60_000, 120_000)  # 07:01, delay 2 min
    assert made == []
    made, _ = create_digests(wh, signer, "day", LATER, 0)  # the day is not over
    assert made == []
    made, _ = create_digests(wh, signer, "day", T0 + 24 * HOUR, 0)
    assert len(made) == 2 and {d.period_end for d in made} == {"2026-11-03T00:00:00.000Z"}


def _rechain(
    entries: list[dict[str, Any]], index: int, change: dict[str, Any]
) -> list[dict[str, Any]]:
    """A forger's rewrite: change one event and re-hash every later entry (the chain alone verifies)."""
    out = entries[:index]
    head = ChainHead(out[-1]["seq"], out[-1]["hash"]) if out else ChainHead()
    for i, entry in enumerate(entries[index:]):
        event = {**event_of(entry), **(change if i == 0 else {})}
        new, head = append(head, event, entry["ingested_at"])
        out.append(new)
    return out


def test_a_rehashed_history_fails_against_the_signed_digests(seeded: Seeded) -> None:
    from pipeline.forensics.chain_check import verify_range

    wh, entries = seeded
    signer = hmac_signer("k" * 32)
    create_digests(wh, signer, "hour", LATER, 0)
    mine = [e for e in entries if e["account_id"] == "A0001SELLER"]
    forged = _rechain(mine, 100, {"outcome": "denied"})
    wh.execute(
        "ALTER TABLE audit.events DELETE WHERE account_id = 'A0001SELLER' SETTINGS mutations_sync = 1"
    )
    wh.insert("audit.events", [event_row(e) for e in forged])
    assert verify_range(wh, "A0001SELLER").broken is None  # the hash chain alone is fooled

    report = verify_digests(wh, signer.verifier(), "A0001SELLER")
    digests = stored_digests(wh, "A0001SELLER")
    covering = next(d for d in digests if d.first_seq <= 101 <= d.last_seq)
    assert [str(p) for p in report.problems] == [
        f"account A0001SELLER at seq {covering.last_seq} (event {mine[covering.last_seq - 1]['event_id']}): "
        "stored chain head differs from the signed digest"
    ]


def test_a_dropped_tail_and_a_forged_digest_are_reported(seeded: Seeded) -> None:
    wh, entries = seeded
    signer = hmac_signer("k" * 32)
    create_digests(wh, signer, "hour", LATER, 0)
    mine = [e for e in entries if e["account_id"] == "A0000SELLER"]
    wh.execute(
        "ALTER TABLE audit.events DELETE WHERE account_id = 'A0000SELLER' AND seq > {n:UInt64} SETTINGS mutations_sync = 1",
        {"n": len(mine) - 5},
    )
    problems = verify_digests(wh, signer.verifier(), "A0000SELLER").problems
    assert [(p.seq, p.message) for p in problems] == [
        (
            len(mine) - 4,
            f"entries {len(mine) - 4}..{len(mine)} are signed by a digest but not stored",
        )
    ]

    # A digest row changed in the table (its count) no longer carries a valid signature.
    wh.execute(
        "ALTER TABLE audit.chain_digests UPDATE event_count = event_count + 1 WHERE account_id = 'A0001SELLER'"
        " AND first_seq = 1 SETTINGS mutations_sync = 1"
    )
    messages = [p.message for p in verify_digests(wh, signer.verifier(), "A0001SELLER").problems]
    assert any("bad signature" in m for m in messages)
    assert any("does not fit its range" in m for m in messages)
    assert any("prev_digest_hash does not name the previous digest" in m for m in messages)
    # And a different key does not verify any of them.
    other = verify_digests(wh, hmac_signer("z" * 32).verifier(), "A0000SELLER").problems
    assert other and all(
        "not the given key" in p.message for p in other if "signed with" in p.message
    )


def test_digests_wait_at_a_gap_and_never_sign_past_it(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = [e for e in entries if e["account_id"] == "A0000SELLER"]
    missing = mine[150]
    wh.execute(
        "ALTER TABLE audit.events DELETE WHERE event_id = {id:String} SETTINGS mutations_sync = 1",
        {"id": missing["event_id"]},
    )
    made, problems = create_digests(
        wh, hmac_signer("k" * 32), "hour", LATER, 0, account="A0000SELLER"
    )
    assert max(d.last_seq for d in made) == missing["seq"] - 1
    assert [(p.seq, p.event_id) for p in problems] == [(missing["seq"] + 1, mine[151]["event_id"])]
    assert f"digests wait for seq {missing['seq']}" in problems[0].message


def test_digest_roundtrips_through_its_row(seeded: Seeded) -> None:
    wh, _ = seeded
    made, _ = create_digests(wh, hmac_signer("k" * 32), "hour", LATER, 0)
    stored = {
        (d.account_id, d.first_seq): d
        for a in ("A0000SELLER", "A0001SELLER")
        for d in stored_digests(wh, a)
    }
    assert all(stored[(d.account_id, d.first_seq)] == d for d in made)
    assert Digest.from_dict(made[0].as_dict()) == made[0]
    assert timestamp_ms(made[0].signed_at, "t") == LATER


def test_cli_keygen_create_and_verify(seeded: Seeded, tmp_path: Path) -> None:
    wh, _ = seeded
    data_dir = wh.path.parent
    wh.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update({"PW_DATA_DIR": str(data_dir), "PW_WEB_PORT": "9", "PW_DIGEST_DELAY": "0"})

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "partnerwatch", *args],
            env={**env, **extra},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )

    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    made = cli("digest", "keygen", "--private", str(private), "--public", str(public))
    assert made.returncode == 0, made.stderr
    key_text = private.read_text()
    assert "digest create" not in key_text
    nokey = cli("digest", "create")
    assert nokey.returncode == 2 and "PW_DIGEST_KEY_FILE" in nokey.stderr
    created = cli("digest", "create", "--period", "day", PW_DIGEST_KEY_FILE=str(private))
    assert created.returncode == 0, created.stderr
    assert "2 digests signed with ed25519:" in created.stdout
    body = key_text.split("-----")[2].strip()
    assert body not in created.stdout + created.stderr  # key material never printed
    verified = cli("digest", "verify", "--public-key", str(public))
    assert verified.returncode == 0, verified.stderr
    assert "2 digests of 2 accounts verified" in verified.stdout

    reopened = EmbeddedWarehouse(data_dir / "warehouse")
    try:
        reopened.execute(
            "ALTER TABLE audit.events UPDATE source_ip = '6.6.6.6', payload = replace(payload, '\"ip\":\"', '\"ip\":\"6') WHERE account_id = 'A0000SELLER' AND seq = 7 SETTINGS mutations_sync = 1"
        )
    finally:
        reopened.close()
    failed = cli("digest", "verify", "--public-key", str(public), "--account", "A0000SELLER")
    assert failed.returncode == 1
    assert "account A0000SELLER at seq 7" in " ".join(failed.stderr.split())
