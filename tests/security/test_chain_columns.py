"""Issue 15, finding 15: `verify-chain` must notice a rewritten column, not only a rewritten payload.

Events go through the real worker (local Kafka, a topic prefix of their own, the embedded
warehouse), so the rows are the ones the loader writes. Then the worker stops and, one account per
column, a single row is forged in one column of `audit.events`, every column in turn: the column
list comes from the migrations (checked against the live table), so a column added later is
covered without editing this test, and fails it until verification derives that column too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT, Settings
from pipeline.forensics.chain_check import accounts, verify_range
from pipeline.ledger import ChainBreak
from sinks.clickhouse import EmbeddedWarehouse, migration_ddl

pytestmark = pytest.mark.integration

EVENTS_PER_ACCOUNT = 5
VICTIM_SEQ = 3
CLI_ACCOUNT = "A9000SELLER"
CHANGED = '[{"field":"status","old":"open","new":"void"}]'


def schema_columns() -> list[str]:
    """The columns of audit.events, as the migrations define them (CREATE, then ALTER ... COLUMN)."""
    columns: list[str] = []
    for _, _, statements in migration_ddl(Settings.from_env({})):
        for statement in statements:
            create = re.match(
                r"CREATE TABLE IF NOT EXISTS audit\.events\s*\((.*)\)\s*ENGINE", statement, re.S
            )
            if create:
                for line in create[1].splitlines():
                    m = re.match(r"\s*(\w+)\s+\w", line)
                    if m and m[1] != "INDEX":
                        columns.append(m[1])
            if re.match(r"ALTER TABLE audit\.events\b", statement):
                for verb, name in re.findall(
                    r"\b(ADD|DROP)\s+COLUMN\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(\w+)", statement
                ):
                    if verb == "ADD" and name not in columns:
                        columns.append(name)
                    elif verb == "DROP" and name in columns:
                        columns.remove(name)
    return columns


COLUMNS = schema_columns()


def account_of(column: str) -> str:
    return f"A{COLUMNS.index(column) + 1:04d}SELLER"


def event(account: str, n: int) -> dict[str, Any]:
    """An event that fills every column of audit.events."""
    return {
        "event_id": f"cols-{account}-{n}",
        "occurred_at": f"2026-11-02T06:{n:02d}:07.250Z",
        "account_id": account,
        "action": "funds.refund",
        "marketplace": "DE",
        "actor": {
            "type": "provider",
            "provider_id": "PREFUNDS",
            "principal_id": f"svc-refunds-{n}",
        },
        "source": {"ip": "203.0.113.7", "user_agent": "refund-bot/1.0", "session_id": f"sess-{n}"},
        "operation": "CreateRefund",
        "resource": {"type": "order", "id": f"ord-{account}-{n}"},
        "changes": [
            {"field": "status", "old": "open", "new": "refunded"},
            {"field": "note", "old": None, "new": 3},
        ],
        "amount": {"value": "12.50", "currency": "EUR"},
        "outcome": "success",
        "approval_id": f"apr-{n}",
    }


@dataclass
class Stored:
    warehouse: EmbeddedWarehouse
    victims: dict[str, str]  # account -> event_id of its row at VICTIM_SEQ
    types: dict[str, str]  # column -> ClickHouse type
    clean_breaks: list[tuple[str, ChainBreak]]
    cli: subprocess.CompletedProcess[str]


def all_breaks(wh: EmbeddedWarehouse) -> list[tuple[str, ChainBreak]]:
    found = []
    for acct in accounts(wh):
        report = verify_range(wh, acct)
        if report.broken:
            found.append((acct, report.broken))
    return found


@pytest.fixture(scope="module")
def stored(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    ns = Namespace(tmp_path_factory.mktemp("chain-columns"))
    names = [account_of(c) for c in COLUMNS] + [CLI_ACCOUNT]
    events = [event(a, n) for n in range(1, EVENTS_PER_ACCOUNT + 1) for a in names]
    worker = Worker(ns).start()
    try:
        ns.send(events)
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= len(events),
            180,
            "every event stored",
        )
    finally:
        worker.stop()
    path = ns.settings.warehouse_path
    wh = EmbeddedWarehouse(path)
    clean = all_breaks(wh)
    rows = wh.query(
        "SELECT account_id, event_id FROM audit.events WHERE seq = {s:UInt64}", {"s": VICTIM_SEQ}
    ).rows
    victims = {str(a): str(e) for a, e in rows}
    types = {str(r[0]): str(r[1]) for r in wh.query("DESCRIBE TABLE audit.events").rows}
    # The issue's own forgery, checked through the command line (which opens the engine itself).
    wh.execute(
        "ALTER TABLE audit.events UPDATE principal_id = 'attacker', source_ip = '198.51.100.66', changes = '[]'"
        " WHERE account_id = {a:String} AND seq = {s:UInt64} SETTINGS mutations_sync = 1",
        {"a": CLI_ACCOUNT, "s": VICTIM_SEQ},
    )
    wh.close()
    env = {**ns.env, "PW_WEB_PORT": "9"}  # no worker there: the CLI opens the warehouse itself
    cli = subprocess.run(
        [sys.executable, "-m", "partnerwatch", "verify-chain", "--account", CLI_ACCOUNT],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    wh = EmbeddedWarehouse(path)
    try:
        yield Stored(wh, victims, types, clean, cli)
    finally:
        wh.close()


def forged_value(column: str, ch_type: str) -> str:
    """SQL for a different value of `column`, of its type (the test must know every type in the table)."""
    base = re.sub(r"^LowCardinality\((.*)\)$", r"\1", ch_type)
    if column == "changes":
        return f"if(changes = '{CHANGED}', '[]', '{CHANGED}')"
    if base == "String":
        return f"concat({column}, '-forged')"
    fixed = re.fullmatch(r"FixedString\((\d+)\)", base)
    if fixed:
        n = fixed[1]
        return f"toFixedString(if({column} = repeat('f', {n}), repeat('e', {n}), repeat('f', {n})), {n})"
    if re.fullmatch(r"UInt(8|16|32|64)", base):
        return f"{column} + 1"
    if base.startswith("DateTime64("):
        return f"{column} + INTERVAL 1 SECOND"
    pytest.fail(f"no forgery for column {column} of type {ch_type}: extend forged_value()")


def forge(wh: EmbeddedWarehouse, account: str, column: str, ch_type: str) -> None:
    """Replace one stored row by a copy differing in `column` only (delete + insert, so sorting and
    partition key columns, which ALTER UPDATE refuses, are forged the same way)."""
    where = {"a": account, "s": VICTIM_SEQ}
    wh.execute("DROP TABLE IF EXISTS audit.forge_tmp")
    wh.execute(
        "CREATE TABLE audit.forge_tmp ENGINE = Memory AS SELECT * FROM audit.events"
        " WHERE account_id = {a:String} AND seq = {s:UInt64}",
        where,
    )
    assert wh.query("SELECT count() FROM audit.forge_tmp").rows[0][0] in (1, "1")
    wh.execute(
        "ALTER TABLE audit.events DELETE WHERE account_id = {a:String} AND seq = {s:UInt64} SETTINGS mutations_sync = 1",
        where,
    )
    wh.execute(
        f"INSERT INTO audit.events SELECT * REPLACE ({forged_value(column, ch_type)} AS {column}) FROM audit.forge_tmp"
    )
    wh.execute("DROP TABLE audit.forge_tmp")


def test_the_column_list_is_the_live_table(stored: Stored) -> None:
    assert list(stored.types) == COLUMNS


def test_rows_the_loader_wrote_verify_clean(stored: Stored) -> None:
    assert stored.clean_breaks == []
    assert len(stored.victims) == len(COLUMNS) + 1


def test_command_line_reports_the_issues_forgery(stored: Stored) -> None:
    out = " ".join((stored.cli.stdout + stored.cli.stderr).split())
    assert stored.cli.returncode == 1, out
    victim = stored.victims[CLI_ACCOUNT]
    assert f"account {CLI_ACCOUNT}: chain breaks at seq {VICTIM_SEQ} (event {victim})" in out
    assert "column" in out and "does not match the hashed event" in out


@pytest.mark.parametrize("column", COLUMNS)
def test_a_forged_column_is_reported_at_its_row(stored: Stored, column: str) -> None:
    wh, account = stored.warehouse, account_of(column)
    victim = stored.victims[account]
    forge(wh, account, column, stored.types[column])
    breaks = all_breaks(wh)
    mine = [
        b for acct, b in breaks if acct.startswith(account)
    ]  # A0002SELLER-forged: a forged account_id
    assert mine, f"forged {column} of {account} seq {VICTIM_SEQ}: verify-chain found no break"
    if column == "seq":
        # The row now claims the next seq: the chain has a hole where it was.
        assert any(
            b.seq == VICTIM_SEQ + 1 and f"expected seq {VICTIM_SEQ}," in b.problem for b in mine
        ), mine
    else:
        assert any(
            b.seq == VICTIM_SEQ and b.event_id in (victim, f"{victim}-forged") for b in mine
        ), mine
    # No other account breaks, except those forged by the cases before this one.
    _forged_so_far.add(account)
    assert not [acct for acct, _ in breaks if acct[: len(account)] not in _forged_so_far]


_forged_so_far: set[str] = {CLI_ACCOUNT}  # forged in the fixture, for the command line
