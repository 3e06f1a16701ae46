"""One partition's ingest work, without Kafka: a batch of source records in, everything it makes out.

For each source record, in offset order: validate (one typed decode, `pipeline.action_decoder`),
mask (`pipeline.masking`), dedup and sequence over one canonical encoding that the hash and the
ledger record share (`LedgerState.sequence`), then run every detector (`detectors.run.observe`)
and fold findings into alerts (`pipeline.alert.fold`). The result, an `IngestBatch`, holds the
ledger records, the dead letters, the alerts to publish, and the accounts and open alerts it
changed; the ingest service (streams/ingest.py) writes the ledger records and dead letters in the
partition's Kafka transaction together with the source offset, and the changed states at its
next state checkpoint (`PartitionState.unwritten_accounts`).

`PartitionState` is what one partition's ingest knows: the ledger's chain heads and dedup window
(`LedgerState`, rebuilt from the ledger partition), each account's detection state and the open
alerts (rebuilt from their changelog partitions). It is changed in place as a batch is worked
through, so it is only valid as long as the batch's transaction commits: the service reloads it
from Kafka whenever one does not.

State records keep the format of the Faust tables they replace (`account_state`, `open_alerts`:
JSON key and value, a tombstone for a deleted key), so a deployment's existing changelogs load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from detectors.run import Applied, apply_entry, apply_event, new_state
from pipeline import deadletter
from pipeline.action_decoder import decode_action
from pipeline.config import Settings
from pipeline.event import Rejected, format_ms
from pipeline.ledger import LedgerState
from pipeline.masking import Masker
from streams.detect_metrics import DetectMetrics
from streams.state_gap import StateGap

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel
    from pipeline.detection_config import DetectionConfig

Record = tuple[bytes | None, bytes | None]


class SourceRecord(Protocol):
    """A consumed Kafka record: aiokafka's own record object as the ingest consumer gets it
    (`streams/faust_internals.py` `records_as_fetched`), or a `ConsumerRecord`."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int


class PartitionState:
    """Sequencing and detection state of one partition of the actions topic."""

    def __init__(
        self,
        partition: int,
        dedup_window_days: float,
        exact_seconds: float = 0,
        filter_mb: float = 0,
    ) -> None:
        self.partition = partition
        self.ledger = LedgerState(dedup_window_days, exact_seconds, filter_mb)
        #: account_id -> {"auth": ..., "det": {detector: its state}, "open": {alert_id: last_seen}, "seq": n}
        self.accounts: dict[str, dict[str, Any]] = {}
        #: alert_id -> the latest version of the open alert
        self.open_alerts: dict[str, dict[str, Any]] = {}
        #: Changed since the state topics last got them (the next state checkpoint writes them):
        #: accounts (the live state dicts), and alert ids with their latest version (None: closed).
        self.unwritten_accounts: dict[str, dict[str, Any]] = {}
        self.unwritten_alerts: dict[str, dict[str, Any] | None] = {}

    @property
    def next_offset(self) -> int:
        """The next source offset to work on (after the last one in the ledger, once loaded)."""
        return self.ledger.next_offset

    # Recovery: committed records of the ledger and the state changelogs, in offset order.
    def load_ledger(
        self,
        value: bytes | None,
        config: DetectionConfig | None = None,
        model: BehaviourModel | None = None,
        fold_from: int | None = None,
    ) -> bool:
        """Observe a ledger entry; with `config` (the state topics read already), an entry of a
        source offset at or after `fold_from` (the last state checkpoint's) is folded into its
        account's state when it is the state's next (`fold_entry`). True when it was folded."""
        entry = orjson.loads(value or b"{}")
        self.ledger.observe(entry)
        return (
            config is not None
            and fold_from is not None
            and int(entry.get("ingest_offset", -1)) >= fold_from
            and self.fold_entry(entry, config, model)
        )

    def fold_entry(
        self, entry: dict[str, Any], config: DetectionConfig, model: BehaviourModel | None
    ) -> bool:
        """Fold a ledger entry read at load into its account's state if it is the state's next
        seq (or seq 1 of an account without one): the entries after the account's last state
        checkpoint, which the ingest service folded before its restart (its alerts were
        published then, and are not again). Anything else is left as it is: entries the state
        holds already, and states with a gap before the entry, which the state check finds
        (streams/state_repair.py). Folded states and changed alerts go to the next checkpoint."""
        account = entry["account_id"]
        seq = int(entry["seq"])
        state = self.accounts.get(account)
        if state is None:
            if seq != 1:
                return False
            state = self.accounts[account] = new_state()
        elif seq != int(state.get("seq", 0)) + 1:
            return False
        applied = apply_entry(state, entry, config, model, self.open_alerts.get)
        self.unwritten_accounts[account] = state
        if applied is not None:
            self.note_alerts(applied, self.unwritten_alerts)
        return True

    def note_alerts(self, applied: Applied, changes: dict[str, dict[str, Any] | None]) -> None:
        """Keep an event's alert versions and closures in the open alerts, and in `changes`
        (alert id -> its latest version, None: closed)."""
        for alert in applied.alerts:
            key = alert["alert_id"]
            self.open_alerts[key] = changes[key] = alert
        for key in applied.closed:
            if self.open_alerts.pop(key, None) is not None:
                changes[key] = None

    def load_account(self, key: bytes | None, value: bytes | None) -> None:
        _load(self.accounts, key, value)

    def load_alert(self, key: bytes | None, value: bytes | None) -> None:
        _load(self.open_alerts, key, value)


def _load(table: dict[str, Any], key: bytes | None, value: bytes | None) -> None:
    name = orjson.loads(key or b'""')
    if value is None:
        table.pop(name, None)
    else:
        table[name] = orjson.loads(value)


def state_record(key: str, value: Any) -> Record:
    """A changelog record: JSON key and value (None: a tombstone), as the Faust tables wrote them."""
    return orjson.dumps(key), None if value is None else _state_json(value)


def _state_json(value: Any) -> bytes:
    """orjson with `OPT_NON_STR_KEYS`, the bytes the changelogs have always had. Only a state
    with a key that is not a string needs the option, and orjson encodes faster without it (an
    account's state: 12.4 against 15.2 µs, about 5 KB, on the benchmark's mix); with string
    keys the bytes are the same (tests/unit/test_state_record.py)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # a key that is not a string (or a value orjson cannot encode at all)
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


@dataclass
class IngestBatch:
    """Everything one batch of one partition produced."""

    partition: int
    ledger: list[Record] = field(default_factory=list)
    deadletters: list[Record] = field(default_factory=list)
    #: (key, value, Kafka timestamp in ms of the source record that raised it), in order
    alerts: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    #: accounts whose state changed (the live state dicts: encoded when written)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: alert_id -> its latest version, None for a closed alert
    alert_changes: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    #: the source offset after the last record of the batch (what the transaction commits)
    next_offset: int = 0
    consumed: int = 0
    accepted: int = 0
    duplicates: int = 0
    #: ids the dedup filters may have held, and of them those the warehouse held (repeats)
    suspects: int = 0
    confirmed: int = 0

    def absorb(self, later: IngestBatch) -> None:
        """Add the batch worked on right after this one (the same partition) to this one, so
        that they commit in one transaction: as if their records had been one batch."""
        self.ledger += later.ledger
        self.deadletters += later.deadletters
        self.alerts += later.alerts
        self.accounts.update(later.accounts)
        self.alert_changes.update(later.alert_changes)
        self.next_offset = later.next_offset
        self.consumed += later.consumed
        self.accepted += later.accepted
        self.duplicates += later.duplicates
        self.suspects += later.suspects
        self.confirmed += later.confirmed

    def account_records(self) -> list[Record]:
        return [state_record(k, v) for k, v in self.accounts.items()]

    def alert_records(self) -> list[Record]:
        return [state_record(k, v) for k, v in self.alert_changes.items()]


@dataclass
class Decoded:
    """A batch validated and masked, before it is sequenced."""

    out: IngestBatch
    #: (source record, its masked event) of the records validation accepted, in offset order
    events: list[tuple[SourceRecord, dict[str, Any]]]
    #: (account_id, event_id) pairs the dedup window's filters may hold: confirm before sequencing
    suspects: list[tuple[str, str]]
    #: the `id_digest` of each event of `events`, in the same order (`DedupWindow.prepare`)
    digests: list[bytes]


class Ingest:
    """The per-record work of the ingest service, configured once per process."""

    def __init__(
        self,
        settings: Settings,
        model: Callable[[], BehaviourModel | None] = lambda: None,
        metrics: DetectMetrics | None = None,
    ) -> None:
        self.actions_topic = settings.actions_topic
        self.max_event_bytes = settings.max_event_bytes
        self.config = settings.detect
        self.masker = Masker(settings.mask_key)
        self.model = model
        self.metrics = metrics or DetectMetrics()
        self._ms = -1
        self._ingested_at = ""

    def now(self) -> str:
        """The ingest time of the record being worked on (`YYYY-MM-DDTHH:MM:SS.mmmZ`)."""
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms, self._ingested_at = ms, format_ms(ms)
        return self._ingested_at

    def batch(
        self,
        state: PartitionState,
        records: Iterable[SourceRecord],
        confirm: Callable[[list[tuple[str, str]], int], Iterable[tuple[str, str]]] | None = None,
    ) -> IngestBatch:
        """Work through `records` (one partition, in offset order); `state` moves along.

        `confirm(pairs, since_ms)` says which suspected repeats the warehouse holds inside the
        window (bounded dedup); the ingest service does `decode`, the lookup and `finish` itself,
        awaiting the lookup."""
        decoded = self.decode(state, records)
        seen: Iterable[tuple[str, str]] = ()
        if decoded.suspects:
            if confirm is None:
                raise RuntimeError("suspected repeats need a warehouse to confirm them")
            seen = confirm(decoded.suspects, state.ledger.window_start_ms())
        return self.finish(state, decoded, seen)

    def decode(self, state: PartitionState, records: Iterable[SourceRecord]) -> Decoded:
        """Validate and mask `records` (dead letters go to the batch), and find the ids the
        dedup window's filters may hold (`Decoded.suspects`)."""
        out = IngestBatch(state.partition)
        ledger = state.ledger
        events: list[tuple[SourceRecord, dict[str, Any]]] = []
        for record in records:
            offset = record.offset
            if offset < ledger.next_offset:
                continue  # sequenced already: a redelivery
            ledger.next_offset = offset + 1
            out.consumed += 1
            key, value = record.key, record.value
            try:
                action = decode_action(value or b"", self.max_event_bytes)
                if key != action["account_id"].encode():
                    raise Rejected("wrong_key", "the message key must be the event's account_id")
            except Rejected as exc:
                out.deadletters.append(
                    (
                        key,
                        deadletter.record(
                            exc.reason,
                            exc.detail,
                            self.actions_topic,
                            state.partition,
                            offset,
                            value,
                        ),
                    )
                )
                continue
            events.append((record, self.masker.mask_event(action)))
        # the dedup window's exact tier compacted, and the batch's ids looked up in it at once
        digests, suspects = ledger.prepare(
            [(e["account_id"], e["event_id"]) for _, e in events], self.now()
        )
        out.suspects = len(suspects)
        return Decoded(out, events, suspects, digests)

    def finish(
        self, state: PartitionState, decoded: Decoded, seen: Iterable[tuple[str, str]] = ()
    ) -> IngestBatch:
        """Sequence and detect the decoded events; `seen`: the suspects the warehouse holds."""
        for _ in self.finish_in_steps(state, decoded, seen, max(1, len(decoded.events))):
            pass
        return decoded.out

    def finish_in_steps(
        self, state: PartitionState, decoded: Decoded, seen: Iterable[tuple[str, str]], step: int
    ) -> Iterator[int]:
        """`finish`, pausing after every `step` events (yielding how many are done) so that the
        caller can publish the alerts raised so far (`decoded.out.alerts`) and let other work
        run; the batch is complete when the iterator ends."""
        out = decoded.out
        ledger = state.ledger
        ledger.confirm(seen)
        model = self.model()
        total = len(decoded.events)
        digests = decoded.digests
        for done, (record, event) in enumerate(decoded.events, 1):
            sequenced = ledger.sequence(event, self.now(), record.offset, digests[done - 1])
            if sequenced is None:
                out.duplicates += 1
            else:
                seq, entry = sequenced
                out.ledger.append((record.key, entry))
                out.accepted += 1
                self._detect(state, out, event, seq, record.timestamp, model)
            if done % step == 0 and done < total:
                yield done
        out.confirmed = len(ledger.confirmed_seen)
        ledger.confirmed_seen = set()
        out.next_offset = ledger.next_offset

    def _detect(
        self,
        state: PartitionState,
        out: IngestBatch,
        event: dict[str, Any],
        seq: int,
        timestamp: int,
        model: BehaviourModel | None,
    ) -> None:
        """Every detector over one sequenced event of its account (`detectors.run.apply_event`,
        the same fold as a replay of the ledger), in `seq` order."""
        account = event["account_id"]
        account_state = state.accounts.get(account)
        if account_state is None:
            account_state = state.accounts[account] = new_state()
        prior = int(account_state.get("seq", 0))
        if seq > prior + 1:
            # Entries before this one are missing from the state: never fold into it.
            raise StateGap(account, prior, seq)
        out.accounts[account] = account_state
        timings = self.metrics.sample()
        applied = apply_event(
            account_state, event, seq, self.config, model, state.open_alerts.get, timings
        )
        self.metrics.record(timings)
        if applied is None or not (applied.alerts or applied.closed):
            return  # folded into this state already, or nothing to tell
        state.note_alerts(applied, out.alert_changes)
        for alert in applied.alerts:
            out.alerts.append((account.encode(), orjson.dumps(alert), timestamp))
