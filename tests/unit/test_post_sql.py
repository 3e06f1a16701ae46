"""partnerwatch/common.py `post_sql`: a client of the worker's /v1/sql waits out its 429 (busy:
PW_SQL_MAX_CONCURRENT queries running) as `Retry-After` says, up to a bound, against a real HTTP
server on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.common import _retry_after, post_sql


class _Server(http.server.ThreadingHTTPServer):
    busy_answers = 0  # how many requests to answer 429 before a 200
    retry_after: str | None = "1"
    marked = True  # the busy answer's header (streams/web/sql.py BUSY_HEADER)
    seen: list[float]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(time.monotonic())
        if len(self.server.seen) <= self.server.busy_answers:
            body = b'{"error": "2 user queries are running (PW_SQL_MAX_CONCURRENT)"}'
            self.send_response(429)
            if self.server.retry_after is not None:
                self.send_header("Retry-After", self.server.retry_after)
            if self.server.marked:
                self.send_header("PartnerWatch-Busy", "sql")
        else:
            body = b'{"columns": ["x"], "rows": [[1]]}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1/sql"


def test_a_busy_answer_is_waited_out_as_retry_after_says(server: _Server) -> None:
    server.busy_answers, server.retry_after = 2, "0.3"
    with post_sql(_url(server), 10, data=b"{}", headers={}) as response:
        assert response.status == 200
        assert response.read() == b'{"columns": ["x"], "rows": [[1]]}'
    assert len(server.seen) == 3
    gaps = [b - a for a, b in zip(server.seen, server.seen[1:], strict=False)]
    assert all(gap >= 0.25 for gap in gaps), gaps


def test_busy_past_the_bound_raises_the_429(server: _Server) -> None:
    server.busy_answers, server.retry_after = 1000, "0.2"
    began = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as caught:
        post_sql(_url(server), 10, data=b"{}", headers={}, busy_wait=1.0)
    assert caught.value.code == 429
    assert b"PW_SQL_MAX_CONCURRENT" in caught.value.read()
    assert time.monotonic() - began < 3.0
    assert 3 <= len(server.seen) <= 7, server.seen


def test_other_errors_are_not_retried(server: _Server) -> None:
    class Refusing(_Handler):
        def do_POST(self) -> None:
            self.server.seen.append(time.monotonic())
            self.send_error(400, "bad query")

    server.RequestHandlerClass = Refusing
    with pytest.raises(urllib.error.HTTPError) as caught:
        post_sql(_url(server), 10, data=b"{}", headers={})
    assert caught.value.code == 400
    assert len(server.seen) == 1


def test_the_auth_throttles_429_is_not_waited(server: _Server) -> None:
    """The web guard's throttle of failed authentications answers 429 with a Retry-After of up to
    5 s at the default rate, without the busy header: raised at once, not retried."""
    server.busy_answers, server.retry_after, server.marked = 1000, "5", False
    began = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as caught:
        post_sql(_url(server), 10, data=b"{}", headers={})
    assert caught.value.code == 429
    assert time.monotonic() - began < 2.0
    assert len(server.seen) == 1


def test_the_busy_header_and_the_worker_agree() -> None:
    import partnerwatch.common as common
    import streams.web.sql as view

    assert common.BUSY_HEADER == view.BUSY_HEADER == "PartnerWatch-Busy"
    source = (Path(__file__).resolve().parents[2] / "streams" / "web" / "sql.py").read_text()
    assert 'BUSY_HEADER: "sql"' in source


def test_a_429_asking_for_a_long_wait_is_not_waited(server: _Server) -> None:
    """The web guard's throttle of failed authentications answers 429 with Retry-After: 30:
    not the busy answer, raised at once."""
    server.busy_answers, server.retry_after = 1000, "30"
    began = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as caught:
        post_sql(_url(server), 10, data=b"{}", headers={})
    assert caught.value.code == 429
    assert time.monotonic() - began < 2.0
    assert len(server.seen) == 1


def test_a_429_without_retry_after_is_not_waited(server: _Server) -> None:
    server.busy_answers, server.retry_after = 1000, None
    with pytest.raises(urllib.error.HTTPError):
        post_sql(_url(server), 10, data=b"{}", headers={})
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("1", 1.0),
        ("0", 0.2),
        ("5", 5.0),
        ("-5", None),
        ("30", None),
        ("3600", None),
        ("1e999", None),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # an HTTP date: not what the worker sends
        ("1\r\nX-Injected: 1", None),
        ("9" * 5000, None),
    ],
)
def test_retry_after_is_waited_only_when_short(value: str | None, seconds: float | None) -> None:
    assert _retry_after(value) == seconds


@pytest.mark.parametrize(("status", "retry_after"), [(401, None), (429, "30")])
def test_a_check_the_worker_refused_is_said_not_skipped_in_silence(
    server: _Server, status: int, retry_after: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """partnerwatch/known.py `quiet_query` (the account checks of `alerts`, `grants`): an error
    from the worker (a refused token, busy past the wait, the auth throttle) gives None, and
    says so on stderr."""
    from partnerwatch.known import quiet_query
    from pipeline.config import Settings

    class Answering(_Handler):
        def do_POST(self) -> None:
            self.server.seen.append(time.monotonic())
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server.RequestHandlerClass = Answering
    settings = Settings.from_env(
        {"PW_WEB_HOST": "127.0.0.1", "PW_WEB_PORT": str(server.server_address[1])}
    )
    assert quiet_query(settings, "SELECT 1") is None
    assert len(server.seen) == 1
    said = capsys.readouterr().err
    assert "not checked against the warehouse" in said and str(status) in said
