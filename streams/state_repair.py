"""Detection state checked against the ledger, and rebuilt from it when it does not match.

The `account_state` table must hold, for every account, what `detectors.run.apply_entry` gives
over the account's ledger entries from seq 1 (grants, approvals and policies are events: the
ledger is the truth, the table a cache of its fold). A table can come back wrong: empty after a
recovery that read nothing (issue 15, finding 20), short of the ledger, or ahead of it. Used as
it is, it raises false alerts and silences true ones, and its wrong state is written back.

So when the ingest service takes up a partition (its first batch after the partition's state
was loaded, before any event of that partition is detected), `check_partition` compares each
account's loaded state with the ledger's head for the account:

- state seq == head: in order;
- no state (`missing`) or a state ahead of the ledger (`ahead`): rebuilt from seq 1;
- a state behind the ledger (`behind`): the ledger's tail after the state's seq is replayed.

The ingest batch also refuses a state with a gap before the entry it gets
(`streams.state_gap.StateGap`: the partition is loaded and checked again), so a stale state
is never folded into. The replay reads the account's entries from
the ledger partition; entries the ledger no longer holds (it is compacted by account after the
dedup window) are read from the warehouse (`audit.events`) and accepted only if their hash chain
links to the ledger's first entry. Alerts are not published again (the ledger's entries had
theirs before they committed); the rebuilt states and open alerts are written in the partition's
first batch's transaction. Each repaired account is logged (`detect.state_repaired`) and counted
(`pw_detect_state_repairs_total{reason}`); a history that could not be completed is logged as
an error and counted in `pw_detect_state_repair_incomplete_total`.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from detectors.run import apply_entry, new_state
from pipeline import floors
from pipeline.alert import Alert
from pipeline.ledger import ChainHead, entry_hash
from sinks import metrics
from streams import ml_models
from streams.app import settings
from streams.ingest_batch import PartitionState
from streams.partition_read import read_partition

log = structlog.get_logger(__name__)
#: The same settings as the ingest service's detection, from the same PW_DETECT_* variables.
CONFIG = settings.detect

#: How long a repair waits for the warehouse loader of a worker that is still starting.
LOADER_WAIT_SECONDS = 60.0
#: Why an account's state was rebuilt (the `reason` label of the repair metric).
REASONS = ("missing", "behind", "ahead", "gap")
for _reason in REASONS:
    metrics.STATE_REPAIRS.labels(_reason)  # exported as 0 from the start


@dataclass
class Stale:
    """One account whose state does not match the ledger."""

    account: str
    reason: str
    #: The replay starts after this seq (the state's own for `behind` and `gap`, else 0).
    after: int
    #: The ledger's head seq for the account (the replay ends there).
    head: int


def stale_accounts(heads: Mapping[str, ChainHead], state_of: Callable[[str], Any]) -> list[Stale]:
    """Accounts of `heads` (ledger heads) whose state (`state_of(account)`) is not at their head."""
    out = []
    for account, head in heads.items():
        state = state_of(account)
        seq = int(state.get("seq", 0)) if state else 0
        if seq == head.seq:
            continue
        if not state:
            out.append(Stale(account, "missing", 0, head.seq))
        elif seq < head.seq:
            out.append(Stale(account, "behind", seq, head.seq))
        else:
            out.append(Stale(account, "ahead", 0, head.seq))
    return out


@dataclass
class _Replay:
    """One account's state being rebuilt."""

    stale: Stale
    state: dict[str, Any]
    #: the partition's open alerts as loaded
    open_alerts: Mapping[str, Alert]
    #: alert id -> its rebuilt version (None: closed during the replay).
    alerts: dict[str, Alert | None] = field(default_factory=dict)
    #: The last seq folded.
    at: int = 0
    replayed: int = 0
    from_warehouse: int = 0
    #: Why the history could not be completed ("" when it was).
    missing: str = ""

    def open_alert(self, key: str) -> Alert | None:
        if key in self.alerts:
            return self.alerts[key]
        # Rebuilt from seq 1, the account's open alerts are rebuilt too; a tail replay continues
        # from the table's, which committed with the state it starts from.
        return self.open_alerts.get(key) if self.stale.reason in ("behind", "gap") else None

    def fold(self, entry: dict[str, Any]) -> None:
        applied = apply_entry(self.state, entry, CONFIG, ml_models.current(), self.open_alert)
        if applied is None:
            return
        for alert in applied.alerts:
            self.alerts[alert["alert_id"]] = alert
        for key in applied.closed:
            self.alerts[key] = None
        self.at = int(entry["seq"])
        self.replayed += 1


@dataclass
class Repairs:
    """Rebuilt account states and their alert changes (None: closed), to write with the next batch."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, Alert | None] = field(default_factory=dict)


async def check_partition(state: PartitionState) -> Repairs:
    """Compare every account state of the partition with the ledger's heads; repair what differs
    (in `state`), and return what was repaired."""
    stale = stale_accounts(state.ledger.heads, state.accounts.get)
    return await repair(state, stale) if stale else Repairs()


async def repair(state: PartitionState, stale: Iterable[Stale]) -> Repairs:
    """Rebuild the states of `stale` accounts (all on `state`'s partition) from the ledger, into
    `state`; return them and their alert changes."""
    started = time.monotonic()
    partition = state.partition
    replays: dict[str, _Replay] = {}
    for s in stale:
        current = state.accounts.get(s.account)
        base = copy.deepcopy(current) if s.reason in ("behind", "gap") and current else new_state()
        replays[s.account] = _Replay(s, base, state.open_alerts, at=s.after)
    async for record in read_partition(settings.ledger_topic, partition, None, None):
        replay = replays.get(record.key.decode()) if record.key else None
        if replay is None:
            continue
        entry = orjson.loads(record.value)
        seq = int(entry["seq"])
        if seq <= replay.at or seq > replay.stale.head:
            continue
        if seq != replay.at + 1 and not replay.missing:
            await _from_warehouse(replay, seq, entry["prev_hash"])
        # Past a hole nothing could fill (`missing` says which), the rest is folded all the same:
        # the most of the history there is, reported as incomplete.
        replay.fold(entry)
    # Rebuilt from seq 1, an account's alerts the table holds but the replay did not leave open
    # are not the ledger's: closed.
    rebuilt = {a for a, r in replays.items() if r.stale.reason in ("missing", "ahead")}
    if rebuilt:
        for key, held in list(state.open_alerts.items()):
            account = held.get("account_id") if isinstance(held, dict) else None
            if account in rebuilt:
                replays[account].alerts.setdefault(key, None)
    repairs = Repairs()
    for account, replay in replays.items():
        for key, rebuilt_alert in replay.alerts.items():
            if rebuilt_alert is None:
                if state.open_alerts.pop(key, None) is not None:
                    repairs.alerts[key] = None
            else:
                state.open_alerts[key] = repairs.alerts[key] = rebuilt_alert
        state.accounts[account] = repairs.accounts[account] = replay.state
        s = replay.stale
        metrics.STATE_REPAIRS.labels(s.reason).inc()
        complete = not replay.missing and replay.at == s.head
        (log.warning if complete else log.error)(
            "detect.state_repaired" if complete else "detect.state_repair_incomplete",
            account=account,
            partition=partition,
            reason=s.reason,
            state_seq=s.after if s.reason != "ahead" else None,
            ledger_head=s.head,
            rebuilt_to=replay.at,
            replayed=replay.replayed,
            from_warehouse=replay.from_warehouse,
            missing=replay.missing or None,
            seconds=round(time.monotonic() - started, 3),
        )
        if not complete:
            metrics.STATE_REPAIR_INCOMPLETE.inc()
    floors.clear_all()  # the replaced states need not be held by the sweeps' floors
    return repairs


#: The account's entries after `after` and before `before`, one row per seq (a row may be stored
#: twice until ClickHouse merges it away).
_WAREHOUSE_RANGE = (
    "SELECT seq, prev_hash, hash, toString(ingested_at), payload FROM audit.events"
    " WHERE account_id = {account:String} AND seq > {after:UInt64} AND seq < {before:UInt64}"
    " ORDER BY seq LIMIT 1 BY seq"
)


async def _from_warehouse(replay: _Replay, before: int, link: str) -> None:
    """Fold the entries between the replay's position and `before` (the ledger's next entry,
    whose `prev_hash` is `link`) from the warehouse, if their hash chain links up to it."""
    wanted = f"{replay.at + 1}..{before - 1}"
    rows = await _warehouse_rows(replay.stale.account, replay.at, before)
    if rows is None:
        replay.missing = f"seq {wanted}: no warehouse"
        return
    if [int(r[0]) for r in rows] != list(range(replay.at + 1, before)):
        replay.missing = f"seq {wanted}: the warehouse holds {len(rows)} of them"
        return
    expected = link
    for seq, prev_hash, stored_hash, ingested_at, payload in reversed(rows):
        at = f"{str(ingested_at).replace(' ', 'T')}Z"
        if (
            stored_hash != expected
            or entry_hash(prev_hash, int(seq), at, str(payload).encode()) != stored_hash
        ):
            replay.missing = (
                f"seq {wanted}: the warehouse's seq {seq} does not link to the ledger's chain"
            )
            return
        expected = prev_hash
    for seq, _, _, _, payload in rows:
        replay.fold({**orjson.loads(payload), "seq": int(seq)})
        replay.from_warehouse += 1


async def _warehouse_rows(account: str, after: int, before: int) -> list[Any] | None:
    # The worker's warehouse (the in-process loader's engine, the loader process's, or a server;
    # imported here, not at the top: importing it registers the loader service with the app,
    # which only the worker wants).
    from streams.loader_instance import loader_service

    waited = 0.0
    while (
        loader_service.warehouse is None and waited < LOADER_WAIT_SECONDS
    ):  # the worker is starting
        await asyncio.sleep(0.5)
        waited += 0.5
    warehouse = loader_service.warehouse
    if warehouse is None:
        return None
    params = {"account": account, "after": after, "before": before}
    try:
        result = await asyncio.get_running_loop().run_in_executor(
            None, warehouse.query, _WAREHOUSE_RANGE, params
        )
    except Exception as exc:  # any backend failure: the history stays incomplete, and says so
        log.error("detect.state_repair_warehouse_failed", account=account, error=str(exc))
        return None
    return list(result.rows)
