"""Ledger entries and alerts as `audit.events` / `audit.alerts` rows, stored without duplicates.

`event_row` lives in pipeline/audit_row.py: `verify-chain` recomputes the derived columns with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any, NamedTuple

import orjson

from pipeline.audit_row import EVENT_COLUMNS, ch_time, event_row
from pipeline.ledger import LEDGER_FIELDS
from sinks.clickhouse import Row, Warehouse

__all__ = [
    "BadRecord",
    "LedgerLine",
    "alert_row",
    "ch_time",
    "checked_alert",
    "checked_entry",
    "event_row",
    "holds_events",
    "ledger_line",
    "store_alerts",
    "store_events",
    "store_lines",
    "stored_keys",
]


def alert_row(alert: dict[str, Any]) -> Row:
    return {
        "alert_id": alert["alert_id"],
        "detector": alert["detector"],
        "severity": alert["severity"],
        "account_id": alert["account_id"],
        "provider_id": alert.get("provider_id", ""),
        "principal_id": alert.get("principal_id", ""),
        "title": alert["title"],
        "summary": alert["summary"],
        "evidence_event_ids": list(alert["evidence_event_ids"]),
        "first_seen": ch_time(alert["first_seen"]),
        "last_seen": ch_time(alert["last_seen"]),
        "count": int(alert["count"]),
        "response": list(alert["response"]),
    }


def store_events(warehouse: Warehouse, entries: Sequence[dict[str, Any]]) -> int:
    """Insert ledger entries not yet stored; return how many rows were written.

    A row is a ledger entry, keyed by `(account_id, seq)`. Redelivery after a crash repeats
    entries already stored (same seq); they are skipped here, so `count()` over audit.events is
    the number of ledger entries without FINAL. A late repeat of an event_id (after the dedup
    window) is a new entry with a new seq and is stored: `uniqExact(event_id)` counts events.
    Stored entries are found through the event_id bloom filter (a redelivered entry has the same
    event_id), then matched by seq.
    """
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in entries:
        unique.setdefault((entry["account_id"], int(entry["seq"])), entry)
    if not unique:
        return 0
    stored = warehouse.query(
        "SELECT account_id, seq FROM audit.events WHERE event_id IN {ids:Array(String)}",
        {"ids": sorted({e["event_id"] for e in unique.values()})},
    )
    for account_id, seq in stored.rows:
        unique.pop((account_id, int(seq)), None)
    rows = [event_row(e) for e in unique.values()]
    warehouse.insert("audit.events", rows)
    return len(rows)


# -- the loader's path: ClickHouse builds the rows ------------------------------------------------


class LedgerLine(NamedTuple):
    """One checked ledger record, as the loader hands it to ClickHouse (`store_lines`).

    `payload` is the canonical event the hash chain covers (the stored `payload` column, and the
    text ClickHouse parses for every derived column); `changes` is the `changes` column as
    `event_row` writes it; the ledger's own fields travel as text.
    """

    payload: str
    changes: str
    seq: int
    prev_hash: str
    hash: str
    ingested_at: str
    account_id: str
    event_id: str


#: What `store_lines` sends per row (all String): read by `_LINES_SELECT` as `{source}`.
LINE_COLUMNS = ("payload", "changes", "seq", "prev_hash", "hash", "ingested_at")
#: The fields of the canonical event that columns derive from, as ClickHouse parses them; a missing
#: field (or nested field) is "" as in `event_row`.
_EVENT_TUPLE = (
    "Tuple(event_id String, account_id String, occurred_at String, action String, marketplace String, "
    "actor Tuple(type String, provider_id String, principal_id String), "
    "source Tuple(ip String, user_agent String, session_id String), operation String, "
    "resource Tuple(type String, id String), outcome String, approval_id String, "
    "amount Tuple(value String, currency String))"
)


def _time(expr: str) -> str:
    """`ch_time` in SQL: `YYYY-MM-DDTHH:MM:SS.mmmZ` (checked: ASCII) -> DateTime64(3, 'UTC')."""
    return (
        f"toDateTime64(concat(substring({expr}, 1, 10), ' ', substring({expr}, 12, 12)), 3, 'UTC')"
    )


def _field(*path: str) -> str:
    expr = "e"
    for name in path:
        expr = f"tupleElement({expr}, '{name}')"
    return expr


#: Every column of `EVENT_COLUMNS`, in order, computed by ClickHouse from `LINE_COLUMNS`.
_LINE_EXPRESSIONS = {
    "event_id": _field("event_id"),
    "account_id": _field("account_id"),
    "seq": "toUInt64(seq)",
    "occurred_at": _time(_field("occurred_at")),
    "ingested_at": _time("ingested_at"),
    "action": _field("action"),
    "marketplace": _field("marketplace"),
    "actor_type": _field("actor", "type"),
    "provider_id": _field("actor", "provider_id"),
    "principal_id": _field("actor", "principal_id"),
    "source_ip": _field("source", "ip"),
    "user_agent": _field("source", "user_agent"),
    "session_id": _field("source", "session_id"),
    "operation": _field("operation"),
    "resource_type": _field("resource", "type"),
    "resource_id": _field("resource", "id"),
    "outcome": _field("outcome"),
    "approval_id": _field("approval_id"),
    "amount_value": _field("amount", "value"),
    "amount_currency": _field("amount", "currency"),
    "changes": "changes",
    "prev_hash": "prev_hash",
    "hash": "hash",
    "payload": "payload",
    "entry_seq": "toUInt64(seq)",
}
if tuple(_LINE_EXPRESSIONS) != EVENT_COLUMNS:
    raise ImportError(
        "a column of audit.events is missing from _LINE_EXPRESSIONS (sinks/audit_store.py)"
    )
#: Constant SQL (no value is ever formatted into it); `{source}` is the warehouse's table of the data.
#: The columns of `EVENT_COLUMNS` as SQL over `e` and `LINE_COLUMNS`.
_COLUMNS_SQL = ", ".join(_LINE_EXPRESSIONS.values())
_LINES_SELECT = (
    f"SELECT {_COLUMNS_SQL}"  # noqa: S608
    + f" FROM (SELECT JSONExtract(payload, '{_EVENT_TUPLE}') AS e, {', '.join(LINE_COLUMNS)} FROM {{source}})"  # noqa: S608
)


def store_lines(warehouse: Warehouse, lines: Sequence[LedgerLine]) -> int:
    """Insert checked ledger records as audit.events rows, all of them (the caller has decided
    which are not stored yet); ClickHouse parses each canonical event and derives the columns
    `event_row` would (tests/unit/test_loader_lines.py compares both). Returns the rows written."""
    if not lines:
        return 0
    payload, changes, seq, prev_hash, hash_, ingested_at, _, _ = zip(*lines, strict=True)
    data: dict[str, list[str]] = dict(
        zip(
            LINE_COLUMNS,
            (
                list(payload),
                list(changes),
                list(map(str, seq)),
                list(prev_hash),
                list(hash_),
                list(ingested_at),
            ),
            strict=True,
        )
    )
    warehouse.insert_select("audit.events", EVENT_COLUMNS, _LINES_SELECT, data)
    return len(lines)


def stored_keys(warehouse: Warehouse, lines: Iterable[LedgerLine]) -> set[tuple[str, int]]:
    """Which of `lines` audit.events already holds, as (account_id, seq): found through the
    event_id bloom filter (a redelivered entry has the same event_id), then matched by seq."""
    lines = list(lines)
    if not lines:
        return set()
    wanted = {(line.account_id, line.seq) for line in lines}
    stored = warehouse.query(
        "SELECT account_id, seq FROM audit.events WHERE event_id IN {ids:Array(String)}",
        {"ids": sorted({line.event_id for line in lines})},
    )
    return {key for key in ((str(a), int(s)) for a, s in stored.rows) if key in wanted}


def holds_events(warehouse: Warehouse) -> bool:
    """Whether audit.events holds any row at all."""
    return bool(warehouse.query("SELECT 1 FROM audit.events LIMIT 1").rows)


def store_alerts(warehouse: Warehouse, alerts: Sequence[dict[str, Any]]) -> int:
    """Insert alert versions; the table keeps the one with the most evidence per alert_id."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        seen = latest.get(alert["alert_id"])
        if seen is None or int(alert["count"]) >= int(seen["count"]):
            latest[alert["alert_id"]] = alert
    warehouse.insert("audit.alerts", [alert_row(a) for a in latest.values()])
    return len(latest)


# -- records from the topics, checked before they join a batch -----------------------------------


class BadRecord(ValueError):
    """A ledger or alerts record the warehouse cannot store; `reason` is a dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_CH_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}")
#: A ledger timestamp exactly as the ledger writes it (`pipeline.event.format_ms`), in the years the
#: event contract allows: ClickHouse converts it without a second look.
_LEDGER_TIME = re.compile(
    r"(19[7-9][0-9]|2[01][0-9][0-9]|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
)
_HASH = re.compile(r"[0-9a-f]{64}")
_EVENT_TIMES = ("occurred_at", "ingested_at")
_EVENT_INTS = ("seq", "entry_seq")
_ALERT_TIMES = ("first_seen", "last_seen")


def checked_entry(raw: bytes | None) -> dict[str, Any]:
    """A ledger record as an entry `store_events` can store, or `BadRecord`."""
    entry = _json_object(raw)
    row = _row(event_row, entry)
    for name, value in row.items():
        if name in _EVENT_INTS:
            _int(name, value, 1, 2**64)
        elif not isinstance(value, str):
            raise BadRecord("wrong_type", f"{name} must be a string")
        elif name in _EVENT_TIMES and not ledger_time(entry[name]):
            raise BadRecord("bad_timestamp", f"{name} is not a ledger timestamp")
        elif name in ("prev_hash", "hash") and not _HASH.fullmatch(value):
            raise BadRecord("bad_value", f"{name} is not a SHA-256 hex digest")
    return entry


def ledger_time(value: Any) -> bool:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, a real date from 1970 to 2200."""
    if type(value) is not str or not _LEDGER_TIME.fullmatch(value):
        return False
    return _real_day(value)


_LEDGER_ONLY = tuple(LEDGER_FIELDS)
_NESTED = (
    ("source", ("ip", "user_agent", "session_id")),
    ("resource", ("type", "id")),
    ("amount", ("value", "currency")),
)


#: `occurred_at`, `ingested_at`, `prev_hash` and `hash` joined by line breaks (which none of them
#: may contain): one match checks all four (`_plain`).
_LEDGER_FIELDS_TEXT = re.compile(
    rf"{_LEDGER_TIME.pattern}\n{_LEDGER_TIME.pattern}\n[0-9a-f]{{64}}\n[0-9a-f]{{64}}"
)


def _real_day(value: str) -> bool:
    """The date of a ledger timestamp (already matched) exists (days 29-31 are checked)."""
    if value[8:10] <= "28":
        return True
    try:
        date(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _plain(entry: Any) -> bool:
    """True when `checked_entry` certainly accepts the decoded record (the common case, decided
    without building a row); False sends it to `checked_entry` for the verdict and its reason.

    Unrolled (it runs for every ledger record the loader reads): the same checks as a loop over
    the field names, with the two timestamps and the two digests matched in one go."""
    if type(entry) is not dict:
        return False
    get = entry.get
    if (
        type(get("event_id")) is not str
        or type(get("account_id")) is not str
        or type(get("action")) is not str
        or type(get("outcome")) is not str
    ):
        return False
    if (
        ("marketplace" in entry and type(entry["marketplace"]) is not str)
        or ("operation" in entry and type(entry["operation"]) is not str)
        or ("approval_id" in entry and type(entry["approval_id"]) is not str)
    ):
        return False
    seq = get("seq")
    if type(seq) is not int or not 1 <= seq < 18446744073709551616:  # 2**64
        return False
    occurred, ingested, prev_hash, hash_ = (
        get("occurred_at"),
        get("ingested_at"),
        get("prev_hash"),
        get("hash"),
    )
    if (
        type(occurred) is not str
        or type(ingested) is not str
        or type(prev_hash) is not str
        or type(hash_) is not str
        or not _LEDGER_FIELDS_TEXT.fullmatch(f"{occurred}\n{ingested}\n{prev_hash}\n{hash_}")
        or not (_real_day(occurred) and _real_day(ingested))
    ):
        return False
    actor = get("actor")
    if (
        type(actor) is not dict
        or type(actor.get("type")) is not str
        or type(actor.get("principal_id")) is not str
        or ("provider_id" in actor and type(actor["provider_id"]) is not str)
    ):
        return False
    if "source" in entry and not _strings(entry["source"], _SOURCE_FIELDS):
        return False
    if "resource" in entry and not _strings(entry["resource"], _RESOURCE_FIELDS):
        return False
    return "amount" not in entry or _strings(entry["amount"], _AMOUNT_FIELDS)


_SOURCE_FIELDS, _RESOURCE_FIELDS, _AMOUNT_FIELDS = (fields for _, fields in _NESTED)


def _strings(nested: Any, fields: tuple[str, ...]) -> bool:
    """A dict whose `fields`, where present, are strings."""
    if type(nested) is not dict:
        return False
    for field in fields:  # noqa: SIM110  # a loop: faster than all() over a generator here
        if field in nested and type(nested[field]) is not str:
            return False
    return True


def ledger_line(raw: bytes | None) -> LedgerLine:
    """A ledger record as a `LedgerLine` for `store_lines`, or `BadRecord` with the reason
    `checked_entry` gives. One JSON decode and one canonical encoding per record: the columns are
    ClickHouse's work."""
    try:
        entry = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        entry = None
    if not _plain(entry):
        entry = checked_entry(raw)  # raises BadRecord with the reason, or accepts an unusual shape
    seq, prev_hash, hash_, ingested_at = (
        entry["seq"],
        entry["prev_hash"],
        entry["hash"],
        entry["ingested_at"],
    )
    for name in _LEDGER_ONLY:  # what is left is the event (`event_of`)
        entry.pop(name, None)
    try:
        payload = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS).decode()
        changes = entry.get("changes")
        changes_text = orjson.dumps(changes).decode() if changes is not None else ""
    except TypeError as exc:  # orjson.JSONEncodeError: e.g. a lone surrogate in a string
        raise BadRecord("wrong_type", str(exc)[:200]) from None
    return LedgerLine(
        payload,
        changes_text,
        seq,
        prev_hash,
        hash_,
        ingested_at,
        entry["account_id"],
        entry["event_id"],
    )


def checked_alert(raw: bytes | None) -> dict[str, Any]:
    """An alerts record as an alert `store_alerts` can store, or `BadRecord`."""
    alert = _json_object(raw)
    row = _row(alert_row, alert)
    for name, value in row.items():
        if name == "count":
            _int(name, alert["count"], 0, 2**32)
        elif isinstance(value, list):
            if not isinstance(alert[name], list) or not all(isinstance(v, str) for v in value):
                raise BadRecord("wrong_type", f"{name} must be an array of strings")
        elif not isinstance(value, str):
            raise BadRecord("wrong_type", f"{name} must be a string")
        elif name in _ALERT_TIMES and not _CH_TIME.fullmatch(value):
            raise BadRecord("bad_timestamp", f"{name} is not a timestamp")
    return alert


def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord("not_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise BadRecord("not_object", "expected a JSON object")
    return doc


def _row(build: Callable[[dict[str, Any]], Row], doc: dict[str, Any]) -> Row:
    try:
        return build(doc)
    except KeyError as exc:
        raise BadRecord("missing_field", f"{exc.args[0]} is required") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise BadRecord("wrong_type", str(exc)[:200]) from None


def _int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord("wrong_type", f"{name} must be an integer")
    if not low <= value < high:
        raise BadRecord("bad_value", f"{name} is out of range")


# -- the loader's fast path: ClickHouse takes the ledger's raw records ---------------------------


def _sql_text(text: str) -> str:
    """A ClickHouse string literal (our own constant text: backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ledger_time_sql(expr: str) -> str:
    """`ledger_time` in SQL: the format (`_LEDGER_TIME`) and a real day (Date32 round trip)."""
    day = f"substring({expr}, 1, 10)"
    return (
        f"(match({expr}, {_sql_text('^' + _LEDGER_TIME.pattern + '$')}) AND "
        f"toString(toDate32OrNull({day})) = {day})"
    )


def _string_sql(raw: str) -> str:
    return f"startsWith({raw}, '\"')"


def _fields_sql(raw: str, fields: Iterable[str], required: Iterable[str] = ()) -> str:
    """`raw` is a JSON object without repeated keys whose `fields` (the `required` ones present)
    are strings: the object parsed once, its keys counted once and its members checked in one
    pass (no map built, no lookup per field), a `has` per required field."""
    kv = f"JSONExtractKeysAndValuesRaw({raw})"
    names = ", ".join(_sql_text(name) for name in fields)
    checks = [
        f"startsWith({raw}, '{{')",
        f"arrayUniq({kv}.1) = length({kv}.1)",
        f"arrayAll((k, v) -> NOT has([{names}], k) OR {_string_sql('v')}, {kv}.1, {kv}.2)",
        *(f"has({kv}.1, {_sql_text(name)})" for name in required),
    ]
    return "(" + " AND ".join(checks) + ")"


def _member(name: str) -> str:
    """The engine's text of the payload member `name` ('' when absent)."""
    return f"values[indexOf(keys, {_sql_text(name)})]"


def _has(name: str) -> str:
    return f"has(keys, {_sql_text(name)})"


#: Each raw record split as `entry_record` joined it: `payload` is the canonical event, the rest
#: the ledger's fields as text (`at`: where the tail starts, found from the end in the record's
#: last 300 bytes, more than any tail `_RAW_TAIL` accepts; `ph`: the tail's `,"prev_hash":"`),
#: `keys` the payload's member names (decoded) and `values` the engine's text of each value (not
#: always the payload's own bytes: `1.0` is `1`, `"\/"` is `"/"`), `e` the fields the columns
#: derive from.
_RAW_SPLIT = (  # constant SQL: no value is ever formatted into it
    "SELECT line, "  # noqa: S608
    "length(line) - position(reverse(right(line, 300)), reverse(',\"seq\":')) - 5 AS at, "
    'substring(line, at) AS tail, position(tail, \',"prev_hash":"\') AS ph, '
    "concat(substring(line, 1, at - 1), '}') AS payload, substring(tail, 8, ph - 8) AS seq, "
    "substring(tail, ph + 14, 64) AS prev_hash, substring(tail, ph + 88, 64) AS hash, "
    "substring(tail, ph + 169, 24) AS ingested_at, "
    "JSONExtractKeysAndValuesRaw(payload) AS kv, kv.1 AS keys, kv.2 AS values, "
    f"if({_has('changes')} AND {_member('changes')} != 'null', {_member('changes')}, '') AS changes, "
    f"JSONExtract(payload, '{_EVENT_TUPLE}') AS e "
    "FROM {source}"
)


#: The tail `pipeline.ledger.entry_record` appends to the canonical event (its last `}` dropped):
#: `,"seq":[1-9][0-9]{0,19},"prev_hash":"<64 hex>","hash":"<64 hex>","ingested_at":"<24>"`, then
#: `,"ingest_offset":` and an integer of up to 19 digits or nothing, then `}`. Checked as the split's parts put back
#: together (cheaper than one regular expression over the tail); `hash` is checked as the
#: digest's lowercase hex and `ingested_at` as a ledger time below.
_RAW_TAIL = " AND ".join(
    [
        "match(seq, '^[1-9][0-9]{0,19}$')",
        "match(prev_hash, '^[0-9a-f]{64}$')",
        'concat(\',"seq":\', seq, \',"prev_hash":"\', prev_hash, \'","hash":"\', hash, '
        '\'","ingested_at":"\', ingested_at, \'"\') = substring(tail, 1, ph + 193)',
        # An offset as JSON writes an integer: no leading zero (the per-record path's decoder
        # refuses one).
        "(substring(tail, ph + 194) = '}' OR "
        "match(substring(tail, ph + 194), '^,\"ingest_offset\":(0|[1-9][0-9]{0,18})}$'))",
    ]
)
#: The row is one `ledger_line` stores as it is: the record is `entry_record`'s layout, its hash
#: covers these exact bytes (the payload stored is the bytes the hash covers), and `_plain` holds
#: for it (checked on the text ClickHouse reads). The record starts with `{`: a byte order mark or
#: a space before it the per-record path refuses or re-encodes.
_RAW_PLAIN = " AND ".join(
    [
        "startsWith(line, '{')",
        "at > 1",
        _RAW_TAIL,
        "isNotNull(toUInt64OrNull(seq))",
        _ledger_time_sql("ingested_at"),
        "lower(hex(SHA256(concat(prev_hash, '\\n', seq, '\\n', ingested_at, '\\n', payload)))) = hash",
        "arrayUniq(keys) = length(keys)",
        f"NOT hasAny(keys, [{', '.join(_sql_text(f) for f in LEDGER_FIELDS)}])",
        # `changes` is stored as text: the engine writes a value its own way (1.0 as 1, U+2028
        # escaped), so its text must be the payload's own: the one `"changes":` in the payload
        # (a key: in a string the quote would be escaped) followed by exactly that text. That is
        # orjson's text for what ingest writes, not for every forged record (see `store_raw`).
        "(NOT has(keys, 'changes') OR (countSubstrings(payload, '\"changes\":') = 1 "
        f"AND (position(payload, concat('\"changes\":', {_member('changes')}, ',')) > 0 "
        f"OR position(payload, concat('\"changes\":', {_member('changes')}, '}}')) > 0)))",
        *(
            f"({_has(name)} AND {_string_sql(_member(name))})"
            for name in ("event_id", "account_id", "action", "outcome")
        ),
        *(
            f"(NOT {_has(name)} OR {_string_sql(_member(name))})"
            for name in ("marketplace", "operation", "approval_id")
        ),
        f"({_has('occurred_at')} AND length({_member('occurred_at')}) = 26 AND "
        + _ledger_time_sql(f"substring({_member('occurred_at')}, 2, 24)")
        + ")",
        f"({_has('actor')} AND "
        + _fields_sql(
            _member("actor"), ("type", "principal_id", "provider_id"), ("type", "principal_id")
        )
        + ")",
        *(
            f"(NOT {_has(name)} OR {_fields_sql(_member(name), fields)})"
            for name, fields in _NESTED
        ),
    ]
)
#: Raised by the engine when a batch cannot take the fast path (`store_raw`).
RAW_REFUSED = "pw-loader: not a plain ledger batch"
#: `store_raw`'s source: the split records, every one plain and none repeating (account_id, seq),
#: else the whole insert fails. Short-circuit evaluation is off: each expression is computed once
#: per block (with it, the shared JSON parse is repeated for every condition, 30x the CPU).
#: `account_id` is the parsed event's: where the record is plain, the string JSONExtractString
#: would give.
_RAW_SOURCE = (  # constant SQL: no value is ever formatted into it
    f"(SELECT e, {', '.join(LINE_COLUMNS)} FROM (SELECT *, ({_RAW_PLAIN}) AS plain, "  # noqa: S608
    "count() OVER (PARTITION BY tupleElement(e, 'account_id'), seq) AS copies "
    f"FROM ({_RAW_SPLIT})) WHERE throwIf(NOT plain OR copies > 1, {_sql_text(RAW_REFUSED)}) = 0)"
)
_RAW_SELECT = (
    # The columns from the event the split parsed once (`_LINES_SELECT` parses it itself).
    f"SELECT {_COLUMNS_SQL} FROM {_RAW_SOURCE}"  # noqa: S608
    # One block reaches the table, at the end: a refused batch stores nothing. One thread: the
    # insert leaves the other core to the interpreter (engine threads that preempt the thread
    # holding the GIL make it wait for a core while every other Python thread waits for it).
    # No merge of the block on insert (`optimize_on_insert`): the batch has no two rows with one
    # sorting key (the source refuses a repeated (account_id, seq), and seq is the key's
    # entry_seq), nor the rollup's block (the view groups it by the rollup's key), so the merge
    # pass found nothing to collapse and cost about 2 µs per row (docs/performance.md).
    + " SETTINGS short_circuit_function_evaluation = 'disable', max_threads = 1, "
    "min_insert_block_size_rows = 1000000000000, min_insert_block_size_bytes = 1000000000000, "
    "optimize_on_insert = 0"
)


def raw_layout(record: bytes | None) -> bool:
    """Whether `record` looks like one `store_raw` takes (a guess, to skip a batch the engine would
    refuse, e.g. ledger records of an older layout; the engine decides)."""
    return record is not None and record.startswith(b'{"account_id":')


def store_raw(warehouse: Warehouse, records: Sequence[bytes]) -> int:
    """Insert ledger records as they are on the topic, with no Python per record: ClickHouse
    splits each (`entry_record`'s layout), checks it and derives the columns, giving the rows
    `store_lines` gives for the same records (tests/unit/test_loader_raw.py).

    For the records ingest writes, whose payload is orjson's canonical encoding, exactly. A record
    forged with a valid hash over a payload that is well-formed but not canonical (spaces, escapes
    such as `\\u0069` or U+2028 written `\\u2028`, keys out of order, numbers orjson writes
    otherwise such as `1e22`, nesting deeper than orjson's 255 levels) is stored with the payload
    and `changes` text the hash covers, where the per-record path stores orjson's re-encoding (or,
    for the nesting, dead-letters it): its other columns are the same. `verify-chain` recomputes
    the hash and the derived columns from the payload stored.

    All or nothing: when any record is not one `ledger_line` would store unchanged (another
    layout, a hash that does not cover these bytes, a shape `_plain` refuses) or two repeat an
    (account_id, seq), the engine fails the insert (`WarehouseError`) and the caller takes the
    per-record path. A refused batch stores nothing (the rows reach the table as one block, once
    all are computed); any other failure may have stored some, as with any insert."""
    if not records:
        return 0
    warehouse.insert_select("audit.events", EVENT_COLUMNS, _RAW_SELECT, {"line": records})
    return len(records)
