"""Retro-hunt: run one detector over stored history and report what it would have raised.

A rule added (or fixed) after the fact should be run over the evidence already kept. Detection
state depends on the account's whole past (grants, approvals and policy come from the log, and
detectors keep windows and baselines), so each account is replayed from its first `seq` up to the
last event before `to`, through `detectors.run.observe` and `pipeline.alert.fold` exactly as the
ingest service does (streams/ingest_batch.py), and only alerts with a finding on an event inside
[from, to) are reported. Alert ids are deterministic, so an alert the pipeline already stored has
the same id: the report marks it `exists`, and `publish` stores only the `new` ones.

It lives with the detectors because it drives them (layering: detectors/ may use pipeline/, not
the reverse). `source` is anything with `query(sql, params)` returning `.columns` and `.rows`: a
warehouse (sinks.clickhouse) or the worker's `/v1/sql` (partnerwatch.warehouse_access.WorkerSql); this
module imports neither, only sends read-only SQL with `{name:Type}` parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from detectors.run import new_state, observe
from pipeline import floors
from pipeline.alert import Alert, alert_id, closed_alerts, fold
from pipeline.config import DetectionConfig
from pipeline.event import Event, format_ms, timestamp_ms

#: Ledger entries read per query while replaying an account.
PAGE = 20_000
#: Alert ids per existence check.
ID_BATCH = 1_000


class Rows(Protocol):
    @property
    def columns(self) -> list[str]: ...

    @property
    def rows(self) -> list[list[Any]]: ...


class Source(Protocol):
    def query(self, sql: str, params: dict[str, Any] | None = None) -> Rows: ...


def detector_ids() -> tuple[str, ...]:
    """Detector ids a hunt accepts: every attack kind is named like its detector, plus the learned one."""
    from pipeline.simulation.attacks import RECIPES

    return tuple(sorted({*RECIPES, "behaviour_anomaly"}))


@dataclass(frozen=True)
class HuntFinding:
    alert: Alert
    exists: bool

    @property
    def status(self) -> str:
        return "exists" if self.exists else "new"


@dataclass(frozen=True)
class HuntReport:
    detector: str
    accounts: tuple[str, ...]
    events_replayed: int
    findings: tuple[HuntFinding, ...]

    @property
    def new(self) -> list[Alert]:
        return [f.alert for f in self.findings if not f.exists]


def _ch(ms: int) -> str:
    text = format_ms(ms)
    return f"{text[:10]} {text[11:23]}"


def accounts_in(source: Source, from_ms: int, to_ms: int, account: str | None = None) -> list[str]:
    """Accounts with events in [from, to) (one, when `account` is given)."""
    result = source.query(
        "SELECT DISTINCT account_id FROM audit.events"
        " WHERE occurred_at >= {from:DateTime64(3, 'UTC')} AND occurred_at < {to:DateTime64(3, 'UTC')}"
        " AND ({account:String} = '' OR account_id = {account:String}) ORDER BY account_id",
        {"from": _ch(from_ms), "to": _ch(to_ms), "account": account or ""},
    )
    return [str(r[0]) for r in result.rows]


def history(
    source: Source, account: str, to_ms: int, page: int = PAGE
) -> Iterator[tuple[int, Event]]:
    """The account's events `(seq, event)` in seq order, from seq 1 to the last one before `to`."""
    last = source.query(
        "SELECT max(seq) FROM audit.events WHERE account_id = {account:String}"
        " AND occurred_at < {to:DateTime64(3, 'UTC')}",
        {"account": account, "to": _ch(to_ms)},
    ).rows
    last_seq = int(last[0][0]) if last and last[0][0] is not None else 0
    after = 0
    while after < last_seq:
        rows = source.query(
            "SELECT seq, payload FROM audit.events WHERE account_id = {account:String}"
            " AND seq > {after:UInt64} AND seq <= {last:UInt64} ORDER BY seq LIMIT {page:UInt32}",
            {"account": account, "after": str(after), "last": str(last_seq), "page": str(page)},
        ).rows
        if not rows:
            return
        for seq, payload in rows:
            yield int(seq), orjson.loads(payload)
        after = int(rows[-1][0])


def replay(
    events: Iterator[tuple[int, Event]] | Sequence[tuple[int, Event]],
    detector: str,
    from_ms: int,
    to_ms: int,
    config: DetectionConfig,
) -> tuple[list[Alert], int]:
    """Fold one account's events as the detect agent does; return the `detector`'s alerts with a
    finding in [from, to) (latest version of each) and how many events were replayed."""
    state = new_state()
    latest: dict[str, Alert] = {}
    opened: dict[str, str] = {}
    in_range: set[str] = set()
    count = 0
    for seq, event in events:
        count += 1
        for finding in observe(state, event, config):
            if finding.detector != detector:
                continue
            key = alert_id(finding.detector, finding.key, finding.window)
            before = latest.get(key) if key in opened else None
            alert = fold(before, finding, event, seq)
            if alert is before:
                continue
            latest[key] = alert
            opened[key] = alert["last_seen"]
            if from_ms <= timestamp_ms(event["occurred_at"], "occurred_at") < to_ms:
                in_range.add(key)
        for key in closed_alerts(opened, event["occurred_at"]):
            del opened[key]  # closed like the detect agent closes it: a later finding starts anew
    floors.clear_all()  # the replay's state is dropped: its rate records need not be held
    alerts = []
    for key in sorted(in_range, key=lambda k: (latest[k]["first_seen"], k)):
        alert = dict(latest[key])
        alert.pop("last_seq", None)
        alerts.append(alert)
    return alerts, count


def existing_ids(source: Source, ids: Sequence[str]) -> set[str]:
    """Which of `ids` audit.alerts already holds."""
    found: set[str] = set()
    for start in range(0, len(ids), ID_BATCH):
        batch = list(ids[start : start + ID_BATCH])
        result = source.query(
            "SELECT DISTINCT alert_id FROM audit.alerts WHERE alert_id IN {ids:Array(String)}",
            {"ids": batch},
        )
        found.update(str(r[0]) for r in result.rows)
    return found


def hunt(
    source: Source,
    detector: str,
    from_ms: int,
    to_ms: int,
    account: str | None = None,
    config: DetectionConfig | None = None,
) -> HuntReport:
    """What `detector` would have raised on stored history in [from, to), each alert marked
    `exists` when audit.alerts already holds its id."""
    if detector not in detector_ids():
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(detector_ids())}")
    if from_ms >= to_ms:
        raise ValueError("--from must be before --to")
    config = config or DetectionConfig()  # the defaults; the command line passes Settings.detect
    accounts = accounts_in(source, from_ms, to_ms, account)
    alerts: list[Alert] = []
    replayed = 0
    for acct in accounts:
        found, count = replay(history(source, acct, to_ms), detector, from_ms, to_ms, config)
        alerts.extend(found)
        replayed += count
    alerts.sort(key=lambda a: (a["first_seen"], a["alert_id"]))
    stored = existing_ids(source, [a["alert_id"] for a in alerts])
    findings = tuple(HuntFinding(a, a["alert_id"] in stored) for a in alerts)
    return HuntReport(detector, tuple(accounts), replayed, findings)
