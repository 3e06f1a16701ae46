"""The embedded warehouse served to the worker by its loader process (sinks/warehouse_remote.py),
over a real Unix socket onto a real chDB warehouse: the worker's calls give what the warehouse
itself gives (hostile strings and bytes included), its errors come back as the same errors, user
SQL is still admitted by the guard and can be cancelled, and the socket refuses what it must.
(The whole worker with its loader process: tests/integration/test_loader_child.py.)"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import structlog

from pipeline.forensics.sql_guard import UnsafeQuery
from sinks import warehouse_remote
from sinks.clickhouse import EmbeddedWarehouse, QueryResult, SqlLimits, WarehouseError, run_user_sql
from sinks.warehouse_remote import RemoteWarehouse, WarehouseServer

HOSTILE = "x'; DROP TABLE audit.t; --\n\t\\ \x00 \u202e<script>alert(1)</script> \u0430dmin"
LIMITS = SqlLimits(
    max_execution_time=20,
    max_memory_usage=1 << 30,
    max_result_rows=1000,
    max_result_bytes=1 << 20,
    max_rows_to_read=10_000_000,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedWarehouse, Path]]:
    root = tmp_path_factory.mktemp("remote")
    folder = root / "socket"
    folder.mkdir(mode=0o700)
    warehouse = EmbeddedWarehouse(root / "wh")
    warehouse.execute("CREATE DATABASE IF NOT EXISTS audit")
    warehouse.execute(
        "CREATE TABLE audit.t (a String, b UInt32, raw String) ENGINE = MergeTree ORDER BY b"
    )
    server = WarehouseServer(warehouse, folder / "warehouse.sock").start()
    try:
        yield warehouse, folder / "warehouse.sock"
    finally:
        server.close()
        warehouse.close()


def test_calls_give_what_the_warehouse_gives(served: tuple[EmbeddedWarehouse, Path]) -> None:
    warehouse, path = served
    remote = RemoteWarehouse(path)
    assert remote.reachable()
    remote.insert("audit.t", [{"a": HOSTILE, "b": 1, "raw": ""}])
    remote.insert_select(
        "audit.t",
        ["a", "raw"],
        "SELECT a, raw FROM {source}",
        {"a": [b"\xff\xfe not utf-8 \x00"], "raw": [b"\x00\x01"]},
    )
    remote.execute("INSERT INTO audit.t (a, b) VALUES ({a:String}, 2)", {"a": HOSTILE})
    sql = "SELECT a, b FROM audit.t WHERE a = {a:String} ORDER BY b"
    got = remote.query(sql, {"a": HOSTILE})
    assert got == warehouse.query(sql, {"a": HOSTILE})
    assert got.rows == [[HOSTILE, 1], [HOSTILE, 2]] and got.types == ["String", "UInt32"]
    binary = remote.query("SELECT hex(a), hex(raw) FROM audit.t WHERE b = 0").rows
    assert binary == [[b"\xff\xfe not utf-8 \x00".hex().upper(), "0001"]]
    counted = "SELECT count() FROM audit.t WHERE b IN {bs:Array(UInt32)}"
    assert remote.query(counted, {"bs": (1, 2)}) == warehouse.query(counted, {"bs": [1, 2]})
    assert remote.query(counted, {"bs": [1, 2]}).rows == [[2]]


def test_the_engines_error_comes_back_as_the_same_error(
    served: tuple[EmbeddedWarehouse, Path],
) -> None:
    warehouse, path = served
    remote = RemoteWarehouse(path)
    with pytest.raises(WarehouseError) as here:
        warehouse.query("SELECT nonexistent FROM audit.t")
    with pytest.raises(WarehouseError) as there:
        remote.query("SELECT nonexistent FROM audit.t")
    assert str(there.value) == str(here.value) and there.value.code == here.value.code
    assert "nonexistent" in str(there.value)
    with pytest.raises(WarehouseError, match="unsupported query parameter type"):
        remote.query("SELECT {x:String}", {"x": {"a": 1}})  # a dict is no parameter here either


def test_user_sql_is_guarded_limited_and_answered(served: tuple[EmbeddedWarehouse, Path]) -> None:
    _, path = served
    remote = RemoteWarehouse(path)
    result = run_user_sql(remote.user_query({}, LIMITS), "SELECT count() FROM t")
    assert result.columns == ["count()"] and int(result.rows[0][0]) >= 3
    for refused in (
        "INSERT INTO t (a, b) VALUES ('z', 9)",
        "SELECT * FROM file('/etc/passwd')",
        "SELECT 1; DROP TABLE t",
    ):
        with pytest.raises(UnsafeQuery):
            run_user_sql(remote.user_query({}, LIMITS), refused)
    small = SqlLimits(20, 1 << 30, 1, 1 << 20, 10_000_000)
    with pytest.raises(WarehouseError, match="PW_SQL_MAX_RESULT_ROWS") as exc:
        run_user_sql(remote.user_query({}, small), "SELECT b FROM t")
    assert exc.value.code == 396
    assert int(remote.query("SELECT count() FROM audit.t WHERE b = 9").rows[0][0]) == 0


def test_a_user_query_is_cancelled_from_another_thread(
    served: tuple[EmbeddedWarehouse, Path],
) -> None:
    _, path = served
    long = SqlLimits(20, 1 << 30, 1000, 1 << 20, 10**13)
    job = RemoteWarehouse(path).user_query({}, long)
    timer = threading.Timer(0.5, job.cancel)
    started = time.monotonic()
    timer.start()
    # the run itself, past the guard (which refuses table functions): 20 s without the cancel
    with pytest.raises(WarehouseError) as exc:
        job.run("SELECT sum(cityHash64(number)) FROM numbers(10000000000000)")
    assert time.monotonic() - started < 5.0, exc.value
    assert exc.value.code == 394, exc.value
    timer.join()
    with pytest.raises(WarehouseError, match="cancelled"):  # and it stays cancelled
        job.run("SELECT 1")
    job.close()


class Odd:
    """A stand-in warehouse (the real one is one per process) answering every query with `value`."""

    def __init__(self, value: object = "late") -> None:
        self.value = value

    def query(self, sql: str, params: object = None) -> QueryResult:
        return QueryResult(["n"], ["String"], [[self.value]])


def _raw(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_what_is_not_a_request_ends_the_connection_and_the_server_goes_on(
    served: tuple[EmbeddedWarehouse, Path],
) -> None:
    _, path = served
    over = _raw(path)
    over.sendall(struct.pack(">I", warehouse_remote.MAX_REQUEST + 1))
    assert _closed(over)
    for body in (b"\xc1", warehouse_remote._encoder.encode(["drop_everything", []])):
        sock = _raw(path)
        sock.sendall(struct.pack(">I", len(body)) + body)
        assert _closed(sock)
    bad_args = _raw(path)
    warehouse_remote._send(bad_args, ["query", [1, 2, 3, 4]])
    answer = warehouse_remote._receive(bad_args, warehouse_remote.MAX_FRAME)
    assert answer[0] == 1 and "bad request query" in answer[2]
    assert _closed(bad_args)  # one call per connection: a second is not read
    # a query's operations without a query open on the connection
    no_query = _raw(path)
    warehouse_remote._send(no_query, ["uq_run", ["SELECT 1"]])
    assert (
        "no user query open" in warehouse_remote._receive(no_query, warehouse_remote.MAX_FRAME)[2]
    )
    assert _closed(no_query)
    # a connection that opened a user query takes that query's calls only
    querying = _raw(path)
    warehouse_remote._send(querying, ["user_query", [{}, asdict(LIMITS)]])
    assert warehouse_remote._receive(querying, warehouse_remote.MAX_FRAME)[0] == 0
    warehouse_remote._send(querying, ["execute", ["DROP TABLE audit.t"]])
    assert _closed(querying)
    assert RemoteWarehouse(path).query("SELECT 1").rows == [[1]]
    assert RemoteWarehouse(path).query("EXISTS TABLE audit.t").rows == [[1]]  # not run


def test_another_user_is_refused_on_either_side(
    served: tuple[EmbeddedWarehouse, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = served
    real = warehouse_remote._peer_uid

    def seen_by(side: str) -> object:
        def uid(sock: socket.socket) -> int:
            in_server = threading.current_thread() is not threading.main_thread()
            return real(sock) + (1 if in_server == (side == "server") else 0)

        return uid

    monkeypatch.setattr(warehouse_remote, "_peer_uid", seen_by("server"))
    # the server hangs up on it: before the request is written ("did not take", a broken pipe)
    # or after ("did not answer"), whichever comes first on a busy machine
    with pytest.raises(WarehouseError, match=r"did not (answer|take)"):
        RemoteWarehouse(path).query("SELECT 1")
    monkeypatch.setattr(warehouse_remote, "_peer_uid", seen_by("client"))
    with pytest.raises(WarehouseError, match="served by user id"):  # not our child: not asked
        RemoteWarehouse(path).query("SELECT 1")
    monkeypatch.undo()
    assert RemoteWarehouse(path).query("SELECT 1").rows == [[1]]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_socket_that_is_not_there_yet_is_waited_for(tmp_path: Path) -> None:
    folder = tmp_path / "late"
    folder.mkdir(mode=0o700)
    path = folder / "w.sock"
    warehouse = Odd()  # one embedded warehouse per process: the module's is open already
    servers: list[WarehouseServer] = []
    timer = threading.Timer(1.0, lambda: servers.append(WarehouseServer(warehouse, path).start()))  # type: ignore[arg-type]
    timer.start()
    try:
        assert RemoteWarehouse(path, wait_seconds=30).query("SELECT 1").rows == [["late"]]
        assert not RemoteWarehouse(tmp_path / "never.sock", wait_seconds=0.5).reachable()
    finally:
        timer.join()
        for server in servers:
            server.close()


def test_a_silent_process_is_an_error_in_time_not_a_hang(tmp_path: Path) -> None:
    folder = tmp_path / "silent"
    folder.mkdir(mode=0o700)
    path = folder / "w.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)  # takes connections, never answers (a stopped or stuck child)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match="no answer in 1 s") as exc:
            RemoteWarehouse(path, call_seconds=1).execute("INSERT INTO audit.t VALUES (1)")
        assert "may have been applied" in str(exc.value) and exc.value.code is None
        assert time.monotonic() - started < 10
    finally:
        listener.close()


def test_a_path_that_is_not_a_socket_is_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir(mode=0o700)
    (folder / "w.sock").write_text("keep me")
    with pytest.raises(WarehouseError, match="not a socket"):
        WarehouseServer(EmbeddedWarehouse.__new__(EmbeddedWarehouse), folder / "w.sock")
    assert (folder / "w.sock").read_text() == "keep me"


def test_the_socket_folder_must_be_private(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(WarehouseError, match="open to others"):
        WarehouseServer(EmbeddedWarehouse.__new__(EmbeddedWarehouse), folder / "w.sock")


def test_nobody_answering_is_an_error_without_a_code(tmp_path: Path) -> None:
    remote = RemoteWarehouse(tmp_path / "none.sock", wait_seconds=0.3)
    assert not remote.reachable()
    with pytest.raises(WarehouseError, match="not reachable") as exc:
        remote.query("SELECT 1")
    assert exc.value.code is None


def test_what_msgpack_cannot_carry_is_an_error_not_a_hang_up(
    served: tuple[EmbeddedWarehouse, Path], tmp_path: Path
) -> None:
    _, path = served
    remote = RemoteWarehouse(path)
    for bad in (2**70, "\ud800"):  # JSON gives both; msgpack carries neither
        with pytest.raises(WarehouseError, match="cannot send query") as exc:
            remote.query("SELECT {x:String}", {"x": bad})
        assert exc.value.code == warehouse_remote.BAD_ARGUMENTS  # a bad request, not a 503

    folder = tmp_path / "odd"
    folder.mkdir(mode=0o700)
    server = WarehouseServer(Odd(2**70), folder / "w.sock").start()  # type: ignore[arg-type]
    try:
        odd = RemoteWarehouse(folder / "w.sock")
        with pytest.raises(WarehouseError, match="the answer cannot be sent"):
            odd.query("SELECT 1")
        with pytest.raises(WarehouseError, match="the answer cannot be sent"):
            odd.query("SELECT 1")  # the server thread lived on to answer the next call
    finally:
        server.close()
    assert remote.query("SELECT 1").rows == [[1]]


def test_a_user_querys_limits_must_be_numbers(served: tuple[EmbeddedWarehouse, Path]) -> None:
    """A limit goes into the engine's settings (chDB: its connection string): a string carrying
    `&readonly=0`, a flag, a negative or NaN is refused, on the socket as anywhere else."""
    _, path = served
    good = {
        "max_execution_time": 20,
        "max_memory_usage": 1 << 30,
        "max_result_rows": 10,
        "max_result_bytes": 1 << 20,
        "max_rows_to_read": 1000,
    }
    for name, bad in (
        ("max_memory_usage", "1&readonly=0"),
        ("max_result_rows", True),
        ("max_rows_to_read", 1.5),
        ("max_execution_time", float("nan")),
        ("max_execution_time", float("inf")),
        ("max_result_bytes", -1),
    ):
        with pytest.raises(ValueError, match=f"the SQL limit {name} must"):
            SqlLimits(**{**good, name: bad})
        sock = _raw(path)
        warehouse_remote._send(sock, ["user_query", [{}, {**good, name: bad}]])
        answer = warehouse_remote._receive(sock, warehouse_remote.MAX_FRAME)
        sock.close()
        assert answer[0] == 1 and answer[1] == "value" and f"the SQL limit {name}" in answer[2]
    assert SqlLimits(**good).max_result_rows == 10


class Jobs(Odd):
    """`Odd` with user queries: each parses to its own text and runs as `Odd.query`."""

    def __init__(self) -> None:
        super().__init__("ran")
        self.opened = 0

    def user_query(self, params: object, limits: SqlLimits) -> Jobs.Job:
        self.opened += 1
        return Jobs.Job(self)

    class Job:
        def __init__(self, warehouse: Jobs) -> None:
            self.warehouse = warehouse

        def format_query(self, sql: str) -> str:
            return sql

        def parse_json(self, sql: str) -> str:
            return "{}"

        def run(self, sql: str) -> QueryResult:
            return self.warehouse.query(sql)

        def cancel(self) -> None:
            pass

        def close(self) -> None:
            pass


@pytest.fixture()
def odd_server(tmp_path: Path) -> Iterator[tuple[Jobs, Path]]:
    folder = tmp_path / "limits"
    folder.mkdir(mode=0o700)
    warehouse = Jobs()
    server = WarehouseServer(warehouse, folder / "w.sock").start()  # type: ignore[arg-type]
    try:
        yield warehouse, folder / "w.sock"
    finally:
        server.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (it sends nothing on it meanwhile)."""
    sock.settimeout(seconds)
    try:
        return _closed(sock)
    except TimeoutError:
        return False


def test_a_quiet_or_half_sent_request_is_dropped_in_time_and_others_are_served(
    odd_server: tuple[Jobs, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that connects and sends nothing, or half a frame, or keeps a user query's
    connection quiet, holds a thread of the loader process only for a while."""
    monkeypatch.setattr(warehouse_remote, "FRAME_SECONDS", 0.5)
    monkeypatch.setattr(warehouse_remote, "KEEP_SECONDS", 1.0)
    _, path = odd_server
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        silent = _raw(path)
        half = _raw(path)
        half.sendall(struct.pack(">I", 100) + b"\x92" + b"x" * 9)  # 10 of its 100 bytes
        kept = _raw(path)  # a user query, opened, and then nothing
        warehouse_remote._send(kept, ["user_query", [{}, asdict(LIMITS)]])
        assert warehouse_remote._receive(kept, warehouse_remote.MAX_FRAME)[0] == 0
        # served meanwhile, on connections of their own
        assert RemoteWarehouse(path).query("SELECT 1").rows == [["ran"]]
        assert _closed_within(silent, 5.0) and _closed_within(half, 5.0)
        assert time.monotonic() - started < 4.0
        assert _closed_within(kept, 5.0)  # KEEP_SECONDS, not FRAME_SECONDS, for a user query
        assert time.monotonic() - started >= 1.0
        assert RemoteWarehouse(path).query("SELECT 1").rows == [["ran"]]
    events = [e["event"] for e in logs]
    assert events.count("warehouse_server.idle_timeout") == 2, events
    assert events.count("warehouse_server.frame_timeout") == 1, events
    for sock in (silent, half, kept):
        sock.close()


def test_a_user_query_left_waiting_past_the_keep_time_is_opened_again(
    odd_server: tuple[Jobs, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's user query whose connection the loader process closed while the query waited
    for its next call (a thread of the worker's executor) is not cut: it is opened again."""
    monkeypatch.setattr(warehouse_remote, "KEEP_SECONDS", 0.3)
    warehouse, path = odd_server
    job = RemoteWarehouse(path).user_query({}, LIMITS)
    time.sleep(1.0)
    assert job.format_query("SELECT 1") == "SELECT 1"
    assert job.run("SELECT 1").rows == [["ran"]]
    job.close()
    assert warehouse.opened == 2
    cancelled = RemoteWarehouse(path).user_query({}, LIMITS)
    time.sleep(1.0)
    cancelled.cancel()  # the client went away: not opened again
    with pytest.raises(WarehouseError, match="cancelled") as exc:
        cancelled.run("SELECT 1")
    assert exc.value.code == 394 and warehouse.opened == 3


def test_connections_over_the_cap_are_refused_at_once_and_served_again_once_closed(
    odd_server: tuple[Jobs, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_remote, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(warehouse_remote, "BUSY_LOG_SECONDS", 1.0)
    _, path = odd_server
    held = [_raw(path) for _ in range(3)]  # the cap's worth, quiet (FRAME_SECONDS: 30 s)
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match="refused query: busy") as exc:
            RemoteWarehouse(path, wait_seconds=0).query("SELECT 1")
        assert isinstance(exc.value, warehouse_remote.Busy) and exc.value.code is None
        # user SQL: a 503 at once, as for a child that is restarting
        with pytest.raises(WarehouseError, match="refused user_query: busy") as exc:
            RemoteWarehouse(path).user_query({}, LIMITS)
        assert exc.value.code is None
        raw = _raw(path)
        answer = warehouse_remote._receive(raw, warehouse_remote.MAX_FRAME)
        assert answer[:2] == [1, "busy"] and "3 connections" in answer[2]
        assert _closed(raw)
        assert time.monotonic() - started < 5.0
        time.sleep(warehouse_remote.BUSY_LOG_SECONDS)
        with pytest.raises(warehouse_remote.Busy):
            RemoteWarehouse(path, wait_seconds=0).query("SELECT 1")
    # one line for the first refusal, then none until BUSY_LOG_SECONDS later, counting them
    busy = [e for e in logs if e["event"] == "warehouse_server.busy"]
    assert [e["refused"] for e in busy] == [1, 3], busy
    # the worker's own calls wait for a free connection (up to wait_seconds): nothing ran yet
    timer = threading.Timer(0.5, held.pop().close)
    timer.start()
    assert RemoteWarehouse(path, wait_seconds=10).query("SELECT 1").rows == [["ran"]]
    timer.join()
    for sock in held:
        sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server's threads see them closed
        with contextlib.suppress(warehouse_remote.Busy):
            jobs = [RemoteWarehouse(path).user_query({}, LIMITS) for _ in range(3)]
            break
        time.sleep(0.1)
    assert [j.run("SELECT 1").rows for j in jobs] == [[["ran"]]] * 3
    for job in jobs:
        job.close()


class Slow(Jobs):
    """`Jobs` whose queries take `delay` seconds and whose user queries run until cancelled (or
    `run_seconds`), noting what happened, in order."""

    def __init__(self, delay: float = 0.0, run_seconds: float = 0.0) -> None:
        super().__init__()
        self.delay, self.run_seconds = delay, run_seconds
        self.seen: list[str] = []
        self.cancelled = threading.Event()

    def query(self, sql: str, params: object = None) -> QueryResult:
        time.sleep(self.delay)
        self.seen.append("query done")
        return super().query(sql, params)

    def user_query(self, params: object, limits: SqlLimits) -> Jobs.Job:
        self.opened += 1
        return Slow.Running(self)

    class Running(Jobs.Job):
        warehouse: Slow

        def run(self, sql: str) -> QueryResult:
            if self.warehouse.cancelled.wait(self.warehouse.run_seconds):
                raise WarehouseError("the query was cancelled", 394)
            return super().run(sql)

        def cancel(self) -> None:
            self.warehouse.cancelled.set()


def _serve(tmp_path: Path, warehouse: Slow) -> tuple[WarehouseServer, Path]:
    folder = tmp_path / "slow"
    folder.mkdir(mode=0o700)
    path = folder / "w.sock"
    return WarehouseServer(warehouse, path).start(), path  # type: ignore[arg-type]


def test_a_burst_of_the_workers_calls_is_served_not_refused(tmp_path: Path) -> None:
    """The worker's executor makes up to 32 calls at once: none fails for want of room in the
    queue of connections not yet accepted (socketserver's default held 5)."""
    server, path = _serve(tmp_path, Slow(delay=0.05))
    failed: list[str] = []
    start = threading.Barrier(32)

    def call() -> None:
        start.wait()
        try:
            RemoteWarehouse(path, wait_seconds=30).query("SELECT 1")
        except WarehouseError as exc:
            failed.append(str(exc))

    try:
        for _ in range(3):
            threads = [threading.Thread(target=call) for _ in range(32)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            start.reset()
    finally:
        server.close()
    assert failed == []


def test_a_cancel_while_the_process_is_busy_still_cancels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client went away while every connection was taken: the cancel is tried again until
    one is free, and a query cancelled sends no further call."""
    monkeypatch.setattr(warehouse_remote, "MAX_CONNECTIONS", 2)
    warehouse = Slow(run_seconds=5.0)
    server, path = _serve(tmp_path, warehouse)
    try:
        job = RemoteWarehouse(path).user_query({}, LIMITS)
        held = _raw(path)  # the other connection: the cap is full
        threading.Timer(0.3, job.cancel).start()
        threading.Timer(1.0, held.close).start()
        started = time.monotonic()
        with pytest.raises(WarehouseError, match="cancelled") as exc:
            job.run("SELECT 1")
        assert exc.value.code == 394 and time.monotonic() - started < 4.0
        with pytest.raises(WarehouseError, match="cancelled"):
            job.format_query("SELECT 1")  # nothing more is sent
        job.close()
    finally:
        server.close()


def test_close_waits_for_the_calls_in_hand(tmp_path: Path) -> None:
    """The loader process closes the engine after `close`: no call is still inside it then."""
    warehouse = Slow(delay=1.0)
    server, path = _serve(tmp_path, warehouse)
    answers: list[str] = []

    def call() -> None:
        try:
            RemoteWarehouse(path).query("SELECT 1")
            answers.append("answered")
        except WarehouseError as exc:  # its connection shut down by `close`: no answer
            answers.append(type(exc).__name__)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    server.close()
    warehouse.seen.append("closed")
    caller.join(10)
    assert warehouse.seen == ["query done", "closed"]
    assert answers == ["Unanswered"]


def test_a_user_query_idle_for_long_opens_again_before_the_process_would_drop_it(
    odd_server: tuple[Jobs, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call sent just as the loader process drops an idle query's connection would be lost: an
    idle query opens again first, well before `KEEP_SECONDS`."""
    monkeypatch.setattr(warehouse_remote, "REOPEN_SECONDS", 0.3)
    warehouse, path = odd_server
    job = RemoteWarehouse(path).user_query({}, LIMITS)
    assert job.format_query("SELECT 1") == "SELECT 1" and warehouse.opened == 1
    time.sleep(0.6)  # KEEP_SECONDS (600 s) is far: the connection is still open
    assert job.run("SELECT 1").rows == [["ran"]]
    assert warehouse.opened == 2
    job.close()


def test_a_cancel_when_the_process_is_gone_returns_at_once(tmp_path: Path) -> None:
    """No loader process to tell: the query went with it, and the client's view is not held."""
    warehouse = Slow()
    server, path = _serve(tmp_path, warehouse)
    job = RemoteWarehouse(path).user_query({}, LIMITS)
    server.close()
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 1.0
    job.close()


def test_a_user_querys_connection_ends_with_its_run_or_after_a_few_calls(
    odd_server: tuple[Jobs, Path],
) -> None:
    _, path = odd_server
    ran = _raw(path)
    for call in (["user_query", [{}, asdict(LIMITS)]], ["uq_run", ["SELECT 1"]]):
        warehouse_remote._send(ran, call)
        assert warehouse_remote._receive(ran, warehouse_remote.MAX_FRAME)[0] == 0
    assert _closed(ran)  # nothing more after its run
    chatty = _raw(path)  # a peer keeping its slot with cheap calls
    warehouse_remote._send(chatty, ["user_query", [{}, asdict(LIMITS)]])
    answered = 0
    with contextlib.suppress(warehouse_remote._Closed, OSError):
        for _ in range(20):
            assert warehouse_remote._receive(chatty, warehouse_remote.MAX_FRAME)[0] == 0
            answered += 1
            warehouse_remote._send(chatty, ["uq_format", ["SELECT 1"]])
    assert answered == warehouse_remote.QUERY_CALLS


def test_a_request_read_once_closing_has_begun_is_not_run(tmp_path: Path) -> None:
    warehouse = Slow()
    server, path = _serve(tmp_path, warehouse)
    try:
        late = _raw(path)
        server._closing = True  # as `close` sets it first
        warehouse_remote._send(late, ["query", ["SELECT 1"]])
        assert _closed(late)
        assert warehouse.seen == []
    finally:
        server.close()
