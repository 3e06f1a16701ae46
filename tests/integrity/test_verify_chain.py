"""`verify-chain` over a range, on the real embedded warehouse: altered, deleted and inserted rows
are reported at their seq, a range starts from its anchor, and the CLI exits nonzero on a break."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT
from pipeline.event import timestamp_ms
from pipeline.forensics.chain_check import ch_ms, parse_when, verify_range
from sinks.audit_store import event_row
from sinks.clickhouse import EmbeddedWarehouse
from tests.integrity.conftest import HOUR, T0

Seeded = tuple[EmbeddedWarehouse, list[dict[str, Any]]]


def of_account(entries: list[dict[str, Any]], account: str = "A0000SELLER") -> list[dict[str, Any]]:
    return [e for e in entries if e["account_id"] == account]


def alter(wh: EmbeddedWarehouse, sql: str, event_id: str) -> None:
    wh.execute(
        f"ALTER TABLE audit.events {sql} WHERE event_id = {{id:String}} SETTINGS mutations_sync = 1",
        {"id": event_id},
    )


def test_clean_chains_verify_whole_and_by_range(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries)
    report = verify_range(wh, "A0000SELLER")
    assert (report.broken, report.events, report.anchor_seq, report.last_seq) == (
        None,
        len(mine),
        0,
        len(mine),
    )

    start, end = T0 + HOUR // 2, T0 + HOUR + HOUR // 4
    inside = [e for e in mine if start <= timestamp_ms(e["ingested_at"], "t") <= end]
    before = [e for e in mine if timestamp_ms(e["ingested_at"], "t") < start]
    report = verify_range(wh, "A0000SELLER", start, end)
    assert report.broken is None
    assert report.anchor_seq == before[-1]["seq"] == inside[0]["seq"] - 1
    assert (report.events, report.last_seq) == (len(inside), inside[-1]["seq"])


def test_altered_row_is_reported_at_its_seq(seeded: Seeded) -> None:
    wh, entries = seeded
    victim = of_account(entries)[200]
    alter(wh, "UPDATE payload = replace(payload, 'listing', 'lusting')", victim["event_id"])
    report = verify_range(wh, "A0000SELLER")
    assert report.broken is not None
    assert (report.broken.seq, report.broken.event_id) == (victim["seq"], victim["event_id"])
    assert "hash does not match" in report.broken.problem
    # A range that ends before the altered row verifies; so does one anchored after it.
    mine = of_account(entries)
    at = timestamp_ms(victim["ingested_at"], "t")
    assert verify_range(wh, "A0000SELLER", None, at - 1).broken is None
    assert (
        verify_range(
            wh, "A0000SELLER", timestamp_ms(mine[201]["ingested_at"], "t") + 1, None
        ).broken
        is None
    )
    # Starting at the altered row, or right after it (it is then the anchor): reported.
    for start in (at, at + 1):
        report = verify_range(wh, "A0000SELLER", start, None)
        assert report.broken is not None and report.broken.seq == victim["seq"]


def test_anchor_entry_is_checked(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries)
    anchor, first = mine[99], mine[100]
    alter(wh, "UPDATE payload = concat(payload, ' ')", anchor["event_id"])
    report = verify_range(wh, "A0000SELLER", timestamp_ms(first["ingested_at"], "t"), None)
    assert report.anchor_seq == anchor["seq"]
    assert report.broken is not None and report.broken.seq == anchor["seq"]
    assert "anchor" in report.broken.problem


def test_deleted_row_is_a_gap_at_the_next_seq(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries)
    victim, after = mine[300], mine[301]
    alter(wh, "DELETE", victim["event_id"])
    report = verify_range(wh, "A0000SELLER")
    assert report.broken is not None
    assert (report.broken.seq, report.broken.event_id) == (after["seq"], after["event_id"])
    assert report.broken.problem == f"gap: expected seq {victim['seq']}, found {after['seq']}"
    # Deleting the row just before --from moves the anchor back: still a gap.
    report = verify_range(wh, "A0000SELLER", timestamp_ms(after["ingested_at"], "t"), None)
    assert report.broken is not None and report.broken.seq == after["seq"]


def test_inserted_rows_are_reported(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries)
    # A modified copy of a stored row (same seq, new content, re-hashed by a forger who does not
    # re-hash the rest of the chain): the seq repeats.
    original = mine[400]
    forged = {**original, "event_id": "forged-1", "outcome": "failure"}
    wh.insert("audit.events", [event_row(forged)])
    report = verify_range(wh, "A0000SELLER")
    assert report.broken is not None and report.broken.seq == original["seq"]
    assert report.broken.problem.startswith("repeat") or "hash" in report.broken.problem


def test_inserted_row_after_the_head_does_not_chain(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries)
    last = mine[-1]
    extra = {
        **last,
        "event_id": "appended-1",
        "seq": last["seq"] + 1,
        "prev_hash": "f" * 64,
        "hash": "e" * 64,
    }
    wh.insert("audit.events", [event_row(extra)])
    report = verify_range(wh, "A0000SELLER")
    assert report.broken is not None
    assert (report.broken.seq, report.broken.event_id) == (last["seq"] + 1, "appended-1")
    assert "prev_hash" in report.broken.problem


def test_parse_when_accepts_dates_and_offsets() -> None:
    assert parse_when("2026-11-02") == T0 - 6 * HOUR
    assert parse_when("2026-11-02T06:00:00") == T0
    assert parse_when("2026-11-02T08:00:00+02:00") == T0
    assert ch_ms(T0) == "2026-11-02 06:00:00.000"


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    # A port nothing listens on: the CLI finds no worker and opens the warehouse itself.
    env.update({"PW_DATA_DIR": str(data_dir), "PW_WEB_PORT": "9"})
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_reports_the_break_and_exits_nonzero(seeded: Seeded) -> None:
    wh, entries = seeded
    mine = of_account(entries, "A0001SELLER")
    victim = mine[150]
    data_dir = wh.path.parent
    wh.close()  # the CLI opens the engine itself (one process at a time)
    clean = _cli(
        data_dir,
        "verify-chain",
        "--ingested-from",
        "2026-11-02T06:00:00Z",
        "--ingested-to",
        "2026-11-02T07:00:00Z",
    )
    assert clean.returncode == 0, clean.stderr
    assert "2 account chains verified" in clean.stdout and "in range" in clean.stdout

    reopened = EmbeddedWarehouse(wh.path)
    try:
        alter(
            reopened,
            "UPDATE changes = '[]', payload = replace(payload, '\"changes\"', '\"chonges\"')",
            victim["event_id"],
        )
    finally:
        reopened.close()
    broken = _cli(
        data_dir,
        "verify-chain",
        "--account",
        "A0001SELLER",
        "--ingested-from",
        victim["ingested_at"][:10],
    )
    assert broken.returncode == 1
    text = " ".join(broken.stderr.split())
    assert (
        f"account A0001SELLER: chain breaks at seq {victim['seq']} (event {victim['event_id']})"
        in text
    )
    bad = _cli(data_dir, "verify-chain", "--ingested-from", "yesterday")
    assert bad.returncode == 2 and "--ingested-from" in bad.stderr
    # --from/--to mean event time everywhere else: here they are refused with the right names
    old = _cli(data_dir, "verify-chain", "--from", "2026-11-02")
    assert old.returncode == 2 and "--ingested-from / --ingested-to" in old.stderr
