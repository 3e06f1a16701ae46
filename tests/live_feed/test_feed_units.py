"""The feed's pieces without a broker: positions, filters, the SSE reader (a real local HTTP server)
and the lifecycle rules on the embedded warehouse."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.sse import SseError, events, open_stream
from pipeline.config import Settings
from sinks.alert_status import BadRequest, StatusConflict, UnknownAlert, record_status
from sinks.audit_store import store_alerts
from sinks.clickhouse import EmbeddedWarehouse, migrate
from streams.alert_feed import AlertFilter, format_position, parse_position


def test_positions_round_trip_and_pad_missing_partitions() -> None:
    assert parse_position("12.0.4.9", 4) == [12, 0, 4, 9]
    assert format_position([12, 0, 4, 9]) == "12.0.4.9"
    assert parse_position("0", 4) == [0, 0, 0, 0]  # from the beginning
    assert parse_position("7.3", 4) == [7, 3, 0, 0]
    for bad in ("", "1.2.3.4.5", "a.b", "-1.0", "1..2", "+1", "9" * 20):
        with pytest.raises(ValueError):
            parse_position(bad, 4)


def test_filters() -> None:
    alert = {"severity": "high", "account_id": "A1", "detector": "provider_without_grant"}
    assert AlertFilter().matches(alert)
    assert AlertFilter("high").matches(alert) and not AlertFilter("critical").matches(alert)
    assert AlertFilter(accounts=frozenset({"A1", "A2"})).matches(alert)
    assert not AlertFilter(accounts=frozenset({"A2"})).matches(alert)
    assert not AlertFilter(detectors=frozenset({"provider_sensitive_action"})).matches(alert)
    with pytest.raises(ValueError, match="severity"):
        AlertFilter("urgent")


STREAM = (
    b": connected 0\r\nretry: 2000\r\n\r\n"
    b'id: 1.0\r\nevent: alert\r\ndata: {"a": 1}\r\n\r\n'
    b": keep-alive\n\n"
    b"event: note\ndata: line one\ndata:line two\n\n"
    b"id: 2.0\ndata: plain\n\n"
    b"data: cut off at the end"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/denied":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "no"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(STREAM)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_sse_reader(server: str) -> None:
    got = list(events(open_stream(f"{server}/stream", timeout=10)))
    assert [(e.event, e.data, e.id) for e in got] == [
        ("alert", '{"a": 1}', "1.0"),
        ("note", "line one\nline two", None),
        ("message", "plain", "2.0"),
    ]  # the unterminated last event is not dispatched
    with pytest.raises(SseError) as refused:
        open_stream(f"{server}/denied", timeout=10)
    assert refused.value.status == 401


def test_lifecycle_rules(tmp_path: Path) -> None:
    settings = Settings.from_env({"PW_DATA_DIR": str(tmp_path)})
    warehouse = EmbeddedWarehouse(settings.warehouse_path)
    try:
        migrate(warehouse, settings)
        base = {
            "detector": "d",
            "severity": "high",
            "account_id": "ACC",
            "provider_id": "P",
            "principal_id": "p",
            "title": "t",
            "summary": "s",
            "evidence_event_ids": [],
            "first_seen": "2026-11-26T10:00:00.000Z",
            "last_seen": "2026-11-26T10:00:00.000Z",
            "count": 1,
            "response": [],
        }
        setups = {
            "open": [],
            "acknowledged": ["ack"],
            "resolved": ["resolve"],
            "reopened": ["resolve", "reopen"],
        }
        expected = {
            "open": {"ack": "acknowledged", "resolve": "resolved", "reopen": None},
            "acknowledged": {"ack": None, "resolve": "resolved", "reopen": None},
            "resolved": {"ack": None, "resolve": None, "reopen": "reopened"},
            "reopened": {"ack": "acknowledged", "resolve": "resolved", "reopen": None},
        }
        for start, actions in expected.items():
            for action, outcome in actions.items():
                alert_id = f"{start}-{action}"
                store_alerts(warehouse, [base | {"alert_id": alert_id}])
                for step in setups[start]:
                    record_status(warehouse, alert_id, step, "setup")
                if outcome is None:
                    with pytest.raises(StatusConflict) as conflict:
                        record_status(warehouse, alert_id, action, "tester")
                    assert conflict.value.current.status == start
                else:
                    row = record_status(warehouse, alert_id, action, "tester", "n")
                    assert (row.status, row.account_id, row.actor, row.note) == (
                        outcome,
                        "ACC",
                        "tester",
                        "n",
                    )
                rows = warehouse.query(
                    "SELECT argMax(status, at), count() FROM audit.alert_status WHERE alert_id = {id:String}",
                    {"id": alert_id},
                ).rows
                want = outcome or start
                assert rows[0][0] == ("" if want == "open" else want), (start, action)
                assert rows[0][1] == len(setups[start]) + (outcome is not None)
        with pytest.raises(UnknownAlert):
            record_status(warehouse, "nowhere", "ack", "tester")
        # known to the live feed, not stored yet: the account hint stands in for the stored alert
        assert (
            record_status(warehouse, "fresh", "ack", "tester", account_hint="ACC2").account_id
            == "ACC2"
        )
        for actor, note in (("", ""), (" ", ""), ("x" * 129, ""), ("ok", "n" * 4001)):
            with pytest.raises(BadRequest):
                record_status(warehouse, "open-ack", "resolve", actor, note)
        with pytest.raises(BadRequest):
            record_status(warehouse, "open-ack", "delete", "tester")
    finally:
        warehouse.close()
