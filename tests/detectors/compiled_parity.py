"""What the parity test of the optional mypyc build (test_compiled_detectors.py) compares: one
simulator stream through detection, as the ingest service folds it, summed up.

`run(seed, count)` feeds `pipeline.simulation.traffic.generate` (every attack kind) through
`detectors.run.apply_event` account by account, with the open alerts kept like the worker's
table and a deterministic stand-in behaviour model, so the behaviour features and
`behaviour_anomaly` run too. It returns the alert ids in the order they were published, a digest
of every alert version, and a digest of the final detection state of every account; and, under
`provider`, the same stream through the provider stage's `Stage` (`provider_fold`: its rules,
the Sigma examples, a stand-in day forest, checkpoints as the snapshot topic stores them).

    python -m tests.detectors.compiled_parity [--pure] SEED COUNT

prints that as JSON; `--pure` imports the pure-Python modules even where the compiled ones are
built (tools/compile_detectors.py `pure_python`), and the output says which ran.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

import orjson

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel
    from detectors.run import Applied
    from pipeline.config import DetectionConfig


class FlaggingModel:
    """Quacks like `BehaviourModel` (no day forest): scores a vector by a fixed hash of its
    values and flags the highest few, so that hours are flagged, learned and worded."""

    name = "parity"
    threshold = 0.95

    def __init__(self) -> None:
        from detectors.behaviour.features import FEATURES, KINDS, MONOTONE

        self.day = None
        self.early = {kind: tuple(20.0 for _ in MONOTONE) for kind in KINDS}
        self.meta: dict[str, Any] = {
            "baseline": {kind: {f: {"mean": 1.0, "std": 2.0} for f in FEATURES} for kind in KINDS}
        }

    def score(self, vectors: list[list[float]]) -> list[float]:
        return [
            int.from_bytes(hashlib.sha256(orjson.dumps(list(v))).digest()[:4], "big") / 2**32
            for v in vectors
        ]

    def out_of_range(self, vector: list[float]) -> list[str]:
        return [] if vector[0] < 40 else ["events"]

    def flags(self, vector: list[float], score: float) -> bool:
        return score > self.threshold


def fold_event(
    raw: dict[str, Any],
    states: dict[str, dict[str, Any]],
    open_alerts: dict[str, Any],
    config: DetectionConfig,
    model: BehaviourModel,
) -> Applied:
    """One simulated event through `apply_event` of its account's state (made in `states` on its
    first event), at the account's next seq; `open_alerts` kept like the worker's table (the
    alerts raised are opened, those closed dropped)."""
    from detectors.run import apply_event, new_state
    from pipeline.event import normalize

    event = normalize(raw)
    state = states.setdefault(event["account_id"], new_state())
    applied = apply_event(
        state, event, int(state.get("seq", 0)) + 1, config, model, open_alerts.get
    )
    assert applied is not None
    for alert in applied.alerts:
        open_alerts[alert["alert_id"]] = alert
    for key in applied.closed:
        open_alerts.pop(key, None)
    return applied


def run(seed: int, count: int) -> dict[str, Any]:
    from pipeline.config import DetectionConfig
    from pipeline.simulation.traffic import ATTACKS, generate

    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel())
    states: dict[str, dict[str, Any]] = {}
    open_alerts: dict[str, Any] = {}
    ids: list[str] = []
    fired: dict[str, int] = {}
    alerts = hashlib.sha256()
    closed = 0
    for raw, _ in generate(
        count, seed=seed, accounts=8, providers=5, attack_rate=0.01, attack_kinds=ATTACKS
    ):
        applied = fold_event(raw, states, open_alerts, config, model)
        for alert in applied.alerts:
            ids.append(alert["alert_id"])
            fired[alert["detector"]] = fired.get(alert["detector"], 0) + 1
            alerts.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
        closed += len(applied.closed)
    provider = provider_fold(seed, count)
    return {
        "provider": provider,
        "variant": variant(),
        "alert_ids": ids,
        "detectors": fired,
        "alerts_digest": alerts.hexdigest(),
        "closed": closed,
        "state_digest": hashlib.sha256(
            orjson.dumps(states, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
    }


def day_model() -> BehaviourModel:
    """Quacks like `BehaviourModel` with a day forest (and nothing else the provider stage asks
    for): a real `Forest` whose score is a fixed hash of the vector, flagging about one day in
    ten, so the provider stage's days across accounts are kept, scored, flagged and worded."""
    from detectors.behaviour.day_features import DAY_FEATURES, DAY_KINDS
    from detectors.behaviour.model import Forest

    stats = {"min": -1e12, "max": 1e12, "mean": 1.0, "std": 2.0}

    class HashForest(Forest):
        def score(self, vectors: list[list[float]]) -> list[float]:
            return [
                int.from_bytes(hashlib.sha256(orjson.dumps(list(v))).digest()[:4], "big") / 2**32
                for v in vectors
            ]

    forest = HashForest(
        None,
        threshold=0.9,
        margin=1.0,
        baseline={kind: {f: dict(stats) for f in DAY_FEATURES} for kind in DAY_KINDS},
        features=DAY_FEATURES,
        kinds=DAY_KINDS,
    )

    class DayModel:
        name = "parity-days"
        day = forest

    return cast("BehaviourModel", DayModel())


#: What the provider-wide parity compares: the stage's every detector and the Sigma examples.
SIGMA_EXAMPLES = "examples"


def stored_records(changed: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    """A checkpoint's records as the provider stage writes them to its snapshot topic
    (streams/provider_state.py `write_checkpoint`): key, and the record's bytes or a tombstone."""
    from streams.provider_state import snapshot_records

    return [
        (record_key, None if record is None else orjson.dumps(record))
        for key, value in changed.items()
        for record_key, record in snapshot_records(key, value)
    ]


def provider_fold(
    seed: int,
    count: int,
    *,
    per_hour: float = 3600.0,
    disorder: float = 0.0,
    checkpoint_every: int = 1000,
    reload: bool = False,
) -> dict[str, Any]:
    """A simulator stream (every attack kind) through the provider stage's `Stage`, with the
    Sigma examples and a day forest (`day_model`), as the stage folds the ledger: a checkpoint
    (`take_dirty`) every `checkpoint_every` events, its records hashed as the snapshot topic
    stores them; with `reload`, the stage then starts over from the snapshot topic's latest
    records (streams/provider_state.py `assemble`), as a new holder restores it. `disorder`:
    seconds of arrival disorder (`traffic.disordered`).

    Returns the alert ids in the order published, per detector a digest of its alert versions
    in that order, a digest of every checkpoint's records, and of the final state per part
    (each provider rule's state across providers, the providers' open alerts and days, the
    accounts' authorization, the Sigma windows; orjson, dict order kept)."""
    from datetime import UTC, datetime
    from pathlib import Path

    import detectors.sigma
    from detectors.provider_wide.run import Stage
    from detectors.sigma.evaluate import SigmaRules
    from detectors.sigma.load import load
    from pipeline.config import DetectionConfig
    from pipeline.event import normalize
    from pipeline.simulation.traffic import ATTACKS, disordered, generate
    from streams.provider_state import assemble

    config = DetectionConfig()
    sigma = SigmaRules(load(Path(detectors.sigma.__file__).parent / SIGMA_EXAMPLES))
    model = day_model()
    stream = list(
        generate(
            count,
            seed=seed,
            accounts=8,
            providers=5,
            attack_rate=0.01,
            attack_kinds=ATTACKS,
            start=datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
            events_per_hour=per_hour,
        )
    )
    if disorder:
        stream = disordered(stream, disorder, seed)
    stage = Stage(config, sigma=sigma, model=model)
    ids: list[str] = []
    alerts: dict[str, Any] = {}
    checkpoints = hashlib.sha256()
    topic: dict[str, bytes] = {}
    for n, (raw, _) in enumerate(stream, 1):
        for alert in stage.observe(normalize(raw)):
            ids.append(alert["alert_id"])
            digest = alerts.setdefault(alert["detector"], hashlib.sha256())
            digest.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
        if n % checkpoint_every == 0 or n == len(stream):
            for key, record in stored_records(stage.take_dirty()):
                checkpoints.update(key.encode() + b"=" + (record or b"-") + b"\n")
                if record is None:
                    topic.pop(key, None)
                else:
                    topic[key] = record
            if reload:
                restored = assemble({k: orjson.loads(v) for k, v in topic.items()})
                stage = Stage(config, restored, sigma=sigma, model=model)
    parts: dict[str, Any] = {}
    for key in sorted(stage.states):
        value = stage.states[key]
        if key.startswith("p|"):
            for name, own in value["det"].items():
                part = parts.setdefault(f"det:{name}", hashlib.sha256())
                part.update(key.encode() + b"=" + orjson.dumps(own) + b"\n")
            rest = {k: v for k, v in value.items() if k != "det"}
            part = parts.setdefault("provider:rest", hashlib.sha256())
            part.update(key.encode() + b"=" + orjson.dumps([list(value), rest]) + b"\n")
        else:
            part = parts.setdefault(key.partition("|")[0] + "|", hashlib.sha256())
            part.update(key.encode() + b"=" + orjson.dumps(value) + b"\n")
    return {
        "alert_ids": ids,
        "alerts": {name: d.hexdigest() for name, d in sorted(alerts.items())},
        "checkpoints": checkpoints.hexdigest(),
        "states": {name: d.hexdigest() for name, d in sorted(parts.items())},
    }


#: Bank and personal data the ingest stream carries, for masking: a card number (spaced, as an
#: integer, in fullwidth digits), an IBAN, an e-mail address, a phone number, a long number.
SENSITIVE = (
    "4111 1111 1111 1111",
    4111111111111111,
    "\uff14\uff11\uff11\uff11" * 4,
    "DE89 3704 0044 0532 0130 00",
    "jane.doe@example.com",
    "+49 30 1234567",
    "ref 123456789012",
)


def _wire(doc: Any) -> bytes | None:
    """A document's bytes as a client would send them (json where orjson refuses: integers
    beyond 64 bits, NaN), or None."""
    import json

    try:
        return orjson.dumps(doc)
    except (orjson.JSONEncodeError, TypeError):
        try:
            return json.dumps(doc).encode()
        except (TypeError, ValueError):
            return None


def _with_sensitive(raw: dict[str, Any], rng: Any) -> dict[str, Any]:
    """`raw` with a sensitive value where masking must find it (or validation refuse it)."""
    doc = orjson.loads(orjson.dumps(raw))
    value = rng.choice(SENSITIVE)
    where = rng.randrange(6)
    if where == 0:
        doc.setdefault("changes", []).append({"field": "iban", "old": None, "new": value})
    elif where == 1:
        doc.setdefault("changes", []).append({"field": "note", "old": "x", "new": value})
    elif where == 2 and isinstance(value, str):
        doc["actor"]["principal_id"] = value.replace(" ", "")
    elif where == 3:
        doc["resource"] = {"type": "bank_account", "id": "acct-0001"}
    elif where == 4 and isinstance(value, str):
        doc["operation"] = f"refund {value}"
    else:
        doc.setdefault("source", {})["session_id"] = str(value).replace(" ", "")
    return doc


def _mutated(value: bytes, rng: Any) -> bytes:
    """One message's bytes broken on the wire: cut, a byte changed, invalid UTF-8, NUL."""
    cut = rng.randrange(1, max(2, len(value)))
    kind = rng.randrange(4)
    if kind == 0:
        return value[:cut]
    if kind == 1:
        return value[:cut] + bytes([rng.randrange(256)]) + value[cut + 1 :]
    if kind == 2:
        return value[:cut] + b"\xff\xfe" + value[cut:]
    return value[:cut] + b"\x00" + value[cut:]


def ingest_messages(seed: int, count: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the source messages of `ingest_fold`: the simulator's stream (every
    attack kind), some events carrying bank and personal data, some sent again (repeats), and
    between them hostile messages: every hostile spelling of every identifier
    (tests/security/test_identifiers.py), the validator's rejected, edge and schema-blind
    documents (tests/unit/test_event.py), every action's minimal event with sensitive values,
    messages broken on the wire, oversized ones, and keys that are not the event's account."""
    import random

    from pipeline.contract import ACTIONS
    from pipeline.simulation.traffic import ATTACKS, generate
    from tests.security.test_identifiers import BASE, FIELDS, hostile, place
    from tests.unit.test_event import (
        EDGE_INVALID,
        EDGE_VALID,
        REJECTED_DOCS,
        SCHEMA_BLIND_ACCEPTED,
        SCHEMA_BLIND_REJECTED,
        minimal,
    )

    rng = random.Random(seed)  # a reproducible test stream
    docs: list[Any] = [
        place(action, path, value)
        for path, kind, action in FIELDS
        for _, value in hostile(BASE.get(kind, "x"))
    ]
    docs += [d for _, d, _ in REJECTED_DOCS] + [d for _, d, _, _ in SCHEMA_BLIND_REJECTED]
    docs += [d for _, d, _ in SCHEMA_BLIND_ACCEPTED] + [d for _, d in EDGE_VALID + EDGE_INVALID]
    for action in sorted(ACTIONS):
        docs.append(minimal(action))
        docs.append(_with_sensitive(minimal(action), rng))
    hostile_messages: list[tuple[bytes, bytes]] = []
    for doc in docs:
        value = _wire(doc)
        if value is not None:
            account = doc.get("account_id") if isinstance(doc, dict) else None
            hostile_messages.append((str(account).encode(), value))
    hostile_messages += [
        (b"A0001SELLER", b""),
        (b"A0001SELLER", b"\xc3\x28"),
        (b"A0001SELLER", b"[]"),
        (b"A0001SELLER", orjson.dumps({**minimal(), "operation": "o" * 70_000})),
    ]
    rng.shuffle(hostile_messages)
    messages: list[tuple[bytes, bytes]] = []
    sent: list[tuple[bytes, bytes]] = []
    for raw, _ in generate(
        count, seed=seed, accounts=8, providers=5, attack_rate=0.01, attack_kinds=ATTACKS
    ):
        key = raw["account_id"].encode()
        roll = rng.random()
        if roll < 0.03:
            raw = _with_sensitive(raw, rng)
        value = orjson.dumps(raw)
        if roll > 0.995:
            messages.append((key, _mutated(value, rng)))
        elif roll > 0.99:
            messages.append((b"A9999OTHER", value))  # not the event's account: wrong_key
        messages.append((key, value))
        sent.append((key, value))
        if roll < 0.05 and hostile_messages:
            messages.append(hostile_messages.pop())
        if 0.05 <= roll < 0.07:
            messages.append(rng.choice(sent))  # sent again: a repeat inside the window
    return messages + hostile_messages


@dataclass
class _Record:
    """A source record as `Ingest.batch` reads it (aiokafka's `ConsumerRecord` fits too)."""

    key: bytes | None
    value: bytes | None
    offset: int
    timestamp: int


def ingest_fold(seed: int, count: int, *, bounded: bool = False) -> dict[str, Any]:
    """`ingest_messages` through the ingest service's per-record work (streams/ingest_batch.py
    `Ingest.batch`: validation, masking, dedup and sequencing, detection) in batches of 500,
    with a clock that moves 40 ms per call (the ingest time of each record). `bounded`: the
    dedup window in bounded mode (`PW_DEDUP_EXACT_SECONDS`, `PW_DEDUP_FILTER_MB`), with a
    stand-in warehouse that confirms suspected repeats and lets the window seal its slots.

    Returns the validator's verdict on every message (the rejects' reason and detail, from the
    dead letters), a digest of the ledger records in order (the masked events' canonical bytes,
    seq, hashes), of the alerts, the counts of each batch, and the window's final state."""
    from pipeline.action_decoder import _DECODER, _normalize
    from pipeline.config import Settings
    from streams.ingest_batch import Ingest, PartitionState

    settings = Settings.from_env({}, mask_key="parity-key")
    ingest = Ingest(settings)
    tick = [1_793_000_000_000]

    def clock() -> int:
        """`time.time_ns` while the batches run: 40 ms later at every call. `Ingest.now` reads
        it (its only caller on this path); the method itself cannot be replaced on the
        compiled `Ingest`."""
        tick[0] += 40
        return tick[0] * 1_000_000

    state = (
        PartitionState(0, 0.02, exact_seconds=60, filter_mb=0.25)
        if bounded
        else PartitionState(0, 0.01)
    )
    stored: dict[tuple[str, str], int] = {}  # the stand-in warehouse: (account, event id) -> ms

    def confirm(pairs: list[tuple[str, str]], since_ms: int) -> list[tuple[str, str]]:
        return [p for p in pairs if stored.get(p, -1) >= since_ms]

    messages = ingest_messages(seed, count)
    fast = 0  # messages the typed decoder's own path accepts (not handed to `parse_action`)
    for _, value in messages:
        try:
            _normalize(_DECODER.decode(value))
            fast += 1
        except Exception:  # whatever it refuses goes to parse_action
            continue
    verdicts: list[list[Any]] = []
    ledger, alerts = hashlib.sha256(), hashlib.sha256()
    batches: list[list[int]] = []
    masked = entries = 0
    for start in range(0, len(messages), 500):
        records = [
            _Record(key, value, start + i, start + i)
            for i, (key, value) in enumerate(messages[start : start + 500])
        ]
        with mock.patch.object(time, "time_ns", clock):
            out = ingest.batch(state, records, confirm)
        for _, dead in out.deadletters:
            record = orjson.loads(dead or b"{}")
            verdicts.append([record["offset"], record["reason"], record["detail"]])
        for ledger_key, ledger_value in out.ledger:
            record_bytes = ledger_value or b""
            ledger.update((ledger_key or b"") + b"=" + record_bytes + b"\n")
            masked += b"sha256" in record_bytes
            entries += 1
            if bounded:
                entry = orjson.loads(record_bytes)
                stored[(entry["account_id"], entry["event_id"])] = _ms(entry["ingested_at"])
        for key, value, timestamp in out.alerts:
            alerts.update(key + b"=" + value + b"@" + str(timestamp).encode() + b"\n")
        batches.append([out.consumed, out.accepted, out.duplicates, out.suspects, out.confirmed])
        if bounded:  # the batch's transaction committed, the warehouse loader stored it
            state.ledger.committed(entries)
            state.ledger.seal(entries)
    window = state.ledger
    return {
        "variant": variant(),
        "messages": len(messages),
        "fast_path": fast,
        "verdicts": verdicts,
        "ledger_digest": ledger.hexdigest(),
        "entries": entries,
        "masked": masked,
        "alerts_digest": alerts.hexdigest(),
        "batches": batches,
        "heads": hashlib.sha256(
            orjson.dumps({k: v.to_json() for k, v in sorted(window.heads.items())})
        ).hexdigest(),
        "seen": window.seen_count(),
        "filtered": window.filter_count(),
        "filters": hashlib.sha256(
            b"".join(window.filters[day].to_bytes() for day in sorted(window.filters))
        ).hexdigest(),
        "next_offset": window.next_offset,
    }


def _ms(ts: str) -> int:
    from pipeline.dedup_window import timestamp_ms_of

    return timestamp_ms_of(ts)


def variant() -> dict[str, list[str]]:
    """The modules of the build this process loaded, compiled and not."""
    from tools.compile_detectors import loaded

    return loaded()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--pure":
        from tools.compile_detectors import pure_python

        pure_python()
        args = args[1:]
    if args and args[0] == "--ingest":
        seed, count = int(args[1]), int(args[2])
        result = {
            "exact": ingest_fold(seed, count),
            "bounded": ingest_fold(seed, count, bounded=True),
        }
    else:
        result = run(int(args[0]), int(args[1]))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
