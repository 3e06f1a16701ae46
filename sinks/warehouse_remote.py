"""The embedded warehouse of another process: the worker's side and the loader process's side.

With `PW_WAREHOUSE_LOADER=process` the worker's child process (`partnerwatch loader --socket`)
owns the embedded chDB warehouse (the engine locks its folder to one process) and loads it; the
worker still needs it for `/v1/sql`, alert actions, digests and the dedup window's
confirmations. `RemoteWarehouse` is the `Warehouse` the worker holds: each call goes to the
child over a Unix socket, where `WarehouseServer` runs it on the real warehouse.

- **Who may connect.** The socket lives in a folder only this user can enter (0700, made by the
  worker for each child), and the server also refuses a peer whose user id is not its own
  (`SO_PEERCRED`). There is no token: nothing reaches the socket over a network.
- **The wire.** A frame is a 4-byte big-endian length and a msgpack value (msgspec): a request
  `[op, args]`, an answer `[0, value]` or `[1, kind, message, code]`. Values are JSON's plus bytes
  and datetimes; nothing is unpickled, nothing becomes code. A request over `MAX_REQUEST` bytes
  (64 MiB), or an unknown operation, ends that connection; the worker reads answers of up to
  `MAX_FRAME` bytes (512 MiB). A user query's limits must be numbers (`SqlLimits`).
- **Errors.** The engine's error comes back as the same `WarehouseError` (message and code); a
  user query's parser errors as `ValueError`, as in-process. A child that is gone or restarting
  is a `WarehouseError` without a code ("not reachable"), as a ClickHouse server that is down.
- **One connection per call**, none kept: a call is tried again on another connection only when
  the loader process refused it as busy, before reading any of it (an insert must not run
  twice), and a child restarted between two calls is simply met anew. A user query holds its own connection from `user_query` to `close`; `cancel`
  comes on another one.
- **Time limits on the loader process's side.** A connection carries one call: the loader
  process closes it once that call is answered, unless the call opened a user query, whose
  connection then takes only that query's calls (`uq_*`), and ends once its `run` is answered
  or after `QUERY_CALLS` (8) calls. A new connection's request must begin within
  `FRAME_SECONDS` (30 s), and every request must be whole within `FRAME_SECONDS` of its first
  byte: the worker writes each request whole, right after connecting. A connection that holds a user query waits
  up to `KEEP_SECONDS` (600 s) for its next request. A user query's calls come from the worker's
  `run_user_sql` (streams/web/sql.py): `format_query` (twice), `parse_json` and `run`, one after
  another on one thread, with only the guard's own checks between them
  (pipeline/forensics/sql_guard.py: well under a second, even for its longest query). The one
  long gap is between `user_query` and the first of them, while `run_user_sql` waits for a thread
  of the worker's user-SQL pool (streams/web/sql.py, `PW_SQL_MAX_CONCURRENT` threads, as many as
  queries admitted, so it should not wait; it is an executor's queue all the same, and a query
  whose handler was cancelled keeps its thread until it stops). So a user query idle for
  `REOPEN_SECONDS` (540 s), or
  whose connection the loader process closed meanwhile, opens the query again on a new
  connection before its next call (nothing of that call was sent, and the query only parses and
  reads). A peer that does not take its answer is dropped after `SEND_SECONDS` (600 s; the
  worker reads an answer as it comes). A connection timed out is closed and logged
  (`warehouse_server.idle_timeout`, `warehouse_server.frame_timeout`); the server goes on.
- **At most `MAX_CONNECTIONS` (64) connections at once.** The worker makes its calls from its
  event loop's default executor (asyncio's: at most 32 threads), one connection per call in
  flight. A user query holds its connection from `user_query` until its run ends; the worker
  runs at most `PW_SQL_MAX_CONCURRENT` (at most 16) of them at once, on threads of their own,
  and their cancels on as many more (streams/web/sql.py), so 64 leaves room for the executor's
  32 calls beside them. One more is refused at once, not queued: the loader process answers that it
  is busy and closes it (logged as `warehouse_server.busy`, at most once every `BUSY_LOG_SECONDS`
  (10 s) with the count of refusals since the last line). The worker raises that as `Busy` (a
  `WarehouseError` without a code), having run nothing: user SQL answers 503; the worker's own
  calls (`RemoteWarehouse.call`) try again for up to `WAIT_SECONDS`, as for a child restarting;
  a user query's `cancel` tries again for up to `CANCEL_SECONDS` (10 s) while it is refused as
  busy (not when the process is gone), and a query cancelled sends no further call. Connections
  not yet accepted wait in the kernel's queue (`socket.SOMAXCONN`); the worker's own calls and a
  cancel that find that queue full try again as well, a user query answers 503 at once.
- **Closing.** `WarehouseServer.close` runs nothing more that comes, cancels the user queries
  running, shuts every connection down and waits up to `CLOSE_SECONDS` (5 s) for the
  connections' threads to end (the loader process then closes the engine; with the loader's own
  stop, up to 30 s, it stays inside the 40 s the worker gives its child to end).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import structlog

from sinks.user_sql import SqlLimits, UserQuery
from sinks.warehouse import InsertColumns, QueryResult, Row, Warehouse, WarehouseError

log = structlog.get_logger(__name__)

#: The largest answer the worker reads (a user query's answer is bounded by PW_SQL_MAX_RESULT_BYTES
#: as JSON; its msgpack is smaller).
MAX_FRAME = 512 * 1024 * 1024
#: The largest request the loader process reads (the worker's requests are SQL, parameters and
#: the rare small insert).
MAX_REQUEST = 64 * 1024 * 1024
#: How long a call waits for the loader process's socket to take connections (it is starting or
#: being restarted; 0 for user SQL, which answers 503 at once instead).
WAIT_SECONDS = 60.0
#: How long a call waits for its answer (a user query: its PW_SQL_MAX_EXECUTION_TIME and this
#: margin; the guard's parser: PARSE_SECONDS).
CALL_SECONDS = 600.0
MARGIN_SECONDS = 30.0
PARSE_SECONDS = 30.0
#: The connections the loader process serves at once (the module's docstring says why 64).
MAX_CONNECTIONS = 64
#: How long the loader process waits for a new connection's first request, and for any request
#: to be whole once its first byte came.
FRAME_SECONDS = 30.0
#: How long a connection that holds a user query waits for its next request.
KEEP_SECONDS = 600.0
#: A user query idle this long opens itself again before its next call, rather than send it on a
#: connection the loader process may be closing at that moment (`KEEP_SECONDS`).
REOPEN_SECONDS = KEEP_SECONDS - 60.0
#: How long a user query's `cancel` is tried again while the loader process is busy.
CANCEL_SECONDS = 10.0
#: How long the loader process's `WarehouseServer.close` waits for its connections' threads.
CLOSE_SECONDS = 5.0
#: At most one `warehouse_server.busy` line this often; each counts the refusals since the last.
BUSY_LOG_SECONDS = 10.0
#: The calls a user query's connection takes (the worker sends `user_query`, `uq_format` twice,
#: `uq_parse` and `uq_run`).
QUERY_CALLS = 8
#: How long the loader process waits for the worker to take an answer.
SEND_SECONDS = 600.0
#: ClickHouse's BAD_ARGUMENTS: a parameter the wire cannot carry (an integer over 64 bits, a lone
#: surrogate), answered as a bad request
BAD_ARGUMENTS = 36
_HEADER = struct.Struct(">I")
_CHUNK = 1 << 20
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
#: what msgspec raises for a value msgpack cannot carry
_UNENCODABLE = (msgspec.EncodeError, OverflowError, UnicodeEncodeError, TypeError)


class _Closed(Exception):
    """The other side closed the connection."""


class _Idle(Exception):
    """No request came on the connection in time."""


class Unanswered(WarehouseError):
    """The loader process did not answer (gone, restarting, too slow): the connection is spent."""


def _cancelled_error() -> WarehouseError:
    return WarehouseError("the query was cancelled", 394)  # QUERY_WAS_CANCELLED


class Busy(Unanswered):
    """The loader process refused the connection: it serves `MAX_CONNECTIONS` already. Nothing
    was run."""


def _send(sock: socket.socket, value: Any) -> None:
    body = _encoder.encode(value)
    sock.sendall(_HEADER.pack(len(body)) + body)


def _receive_exactly(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    """`size` bytes (`deadline`: all of them by then, else TimeoutError)."""
    buffer = bytearray()
    while len(buffer) < size:  # in chunks: a header alone does not make a large allocation
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the frame was not whole in time")
            sock.settimeout(left)
        chunk = sock.recv(min(size - len(buffer), _CHUNK))
        if not chunk:
            raise _Closed
        buffer += chunk
    return bytes(buffer)


def _body(sock: socket.socket, header: bytes, limit: int, deadline: float | None = None) -> Any:
    (size,) = _HEADER.unpack(header)
    if size > limit:
        raise WarehouseError(f"a warehouse frame of {size} bytes is over the limit of {limit}")
    return _decoder.decode(_receive_exactly(sock, size, deadline))


def _receive(sock: socket.socket, limit: int) -> Any:
    return _body(sock, _receive_exactly(sock, _HEADER.size), limit)


def _receive_request(sock: socket.socket, wait: float) -> Any:
    """The next request: its first byte within `wait` seconds (else `_Idle`), the whole frame
    within `FRAME_SECONDS` of it (else TimeoutError)."""
    sock.settimeout(wait)
    try:
        first = sock.recv(1)
    except TimeoutError:
        raise _Idle from None
    if not first:
        raise _Closed
    deadline = time.monotonic() + FRAME_SECONDS
    header = first + _receive_exactly(sock, _HEADER.size - 1, deadline)
    return _body(sock, header, MAX_REQUEST, deadline)


def _hung_up(sock: socket.socket) -> bool:
    """The other side closed `sock`, where no answer is awaited (nothing else can be there)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _refusal(sock: socket.socket, op: str) -> Busy | None:
    """The loader process's refusal of this connection, when it sent one before closing it."""
    try:
        sock.settimeout(1.0)
        answer = _receive(sock, 64 * 1024)
    except (OSError, _Closed, WarehouseError, msgspec.DecodeError):
        return None
    if isinstance(answer, list) and len(answer) == 4 and answer[:2] == [1, "busy"]:
        return Busy(f"the warehouse process refused {op}: {answer[2]}")
    return None


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _wire(result: QueryResult) -> list[Any]:
    return [result.columns, result.types, result.rows]


def _result(value: Any) -> QueryResult:
    """`_wire`'s value back."""
    columns, types, rows = value
    return QueryResult(list(columns), list(types), list(rows))


# -- the worker's side --------------------------------------------------------------------------


class RemoteWarehouse:
    """The `Warehouse` of the loader process at `path` (a Unix socket).

    A call waits up to `wait_seconds` for the socket to take connections (the child starting or
    restarting: connecting is safe to repeat, nothing has been sent), then up to `call_seconds`
    for its answer; past that it is an `Unanswered` error (an insert may then have been applied).
    """

    def __init__(
        self, path: Path, *, wait_seconds: float = WAIT_SECONDS, call_seconds: float = CALL_SECONDS
    ) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self.call_seconds = call_seconds

    def connect(self, wait: float = 0.0) -> socket.socket:
        """A new connection to the loader process, retried for up to `wait` seconds while nothing
        listens or its queue of connections not yet accepted is full (nothing is sent before);
        `Unanswered` when none is made, WarehouseError when the peer is another user."""
        deadline = time.monotonic() + wait
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            try:
                sock.connect(str(self.path))
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline or not isinstance(
                    exc, FileNotFoundError | ConnectionRefusedError | BlockingIOError
                ):
                    raise Unanswered(
                        f"the warehouse process is not reachable ({self.path}): {exc.strerror or exc}"
                    ) from None
            time.sleep(0.2)
        uid = _peer_uid(sock)
        if uid != os.getuid():  # a socket put there by someone else is not our child
            sock.close()
            raise WarehouseError(
                f"the warehouse socket {self.path} is served by user id {uid}, not this user's"
            )
        return sock

    def reachable(self) -> bool:
        """Whether the loader process takes connections on its socket now."""
        try:
            self.connect().close()
        except WarehouseError:
            return False
        return True

    def call(self, op: str, *args: Any) -> Any:
        """One operation on a connection of its own (again on a new one while the loader process
        is busy, up to `wait_seconds`: a refused connection ran nothing)."""
        return self.exchange(op, args, self.call_seconds, self.wait_seconds)

    def exchange(
        self, op: str, args: Sequence[Any], timeout: float, seconds: float, *, wait: bool = True
    ) -> Any:
        """`op` on a connection of its own, on a new one again while the loader process refuses
        it as busy, for up to `seconds` (then `Busy`); `wait`: also while nothing listens."""
        deadline = time.monotonic() + seconds
        while True:
            sock = self.connect(max(0.0, deadline - time.monotonic()) if wait else 0.0)
            try:
                return _exchange(sock, op, args, timeout)
            except Busy:
                if time.monotonic() >= deadline:
                    raise
            finally:
                sock.close()
            time.sleep(0.2)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.call("execute", sql, params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        return _result(self.call("query", sql, params))

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if rows:
            self.call("insert", table, list(rows))

    def insert_select(
        self, table: str, columns: Sequence[str], select: str, data: InsertColumns
    ) -> None:
        if data and any(len(v) for v in data.values()):
            self.call(
                "insert_select",
                table,
                list(columns),
                select,
                {k: list(v) for k, v in data.items()},
            )

    def user_query(self, params: dict[str, Any], limits: SqlLimits) -> UserQuery:
        return _RemoteUserQuery(self, params, limits)

    def close(self) -> None:
        """Nothing held: the loader process closes the warehouse itself."""


def _exchange(sock: socket.socket, op: str, args: Sequence[Any], timeout: float) -> Any:
    sock.settimeout(timeout)
    try:
        _send(sock, [op, list(args)])
    except _UNENCODABLE as exc:
        raise WarehouseError(f"cannot send {op}: {exc}", BAD_ARGUMENTS) from None
    except OSError as exc:  # closed: refused as busy (and said so), or gone
        raise _refusal(sock, op) or Unanswered(
            f"the warehouse process did not take {op}: {exc}"
        ) from None
    try:
        answer = _receive(sock, MAX_FRAME)
    except (OSError, _Closed) as exc:
        why = (
            f"no answer in {timeout:g} s"
            if isinstance(exc, TimeoutError)
            else "it closed the connection"
            if isinstance(exc, _Closed)
            else str(exc)
        )
        may = " (it may have been applied)" if op in ("execute", "insert", "insert_select") else ""
        raise Unanswered(f"the warehouse process did not answer {op}: {why}{may}") from None
    if answer[0] == 0:
        return answer[1]
    _, kind, message, code = answer
    if kind == "value":
        raise ValueError(message)
    if kind == "busy":
        raise Busy(f"the warehouse process refused {op}: {message}")
    raise WarehouseError(message, code)


class _RemoteUserQuery:
    """A user query in the loader process, on a connection of its own until `close` (or until the
    process does not answer: the connection is then spent, and the query with it)."""

    def __init__(
        self, warehouse: RemoteWarehouse, params: dict[str, Any], limits: SqlLimits
    ) -> None:
        self._warehouse = warehouse
        self._opening = [params, asdict(limits)]
        self._run_seconds = float(limits.max_execution_time) + MARGIN_SECONDS
        self._sock: socket.socket | None = warehouse.connect()
        self._lock = threading.Lock()
        self._cancelled = False
        self._token = ""
        self._answered = time.monotonic()
        try:
            with self._lock:
                self._token = str(self._send("user_query", PARSE_SECONDS, *self._opening))
        except BaseException:
            self.close()
            raise

    def _call(self, op: str, timeout: float, *args: Any) -> Any:
        with self._lock:
            if self._cancelled:  # `cancel` came before this call: nothing more is sent
                raise _cancelled_error()
            if self._sock is not None and (
                _hung_up(self._sock) or time.monotonic() - self._answered > REOPEN_SECONDS
            ):
                self._reopen(self._sock)
            return self._send(op, timeout, *args)

    def _reopen(self, spent: socket.socket) -> None:
        """The loader process closed the query's connection while it waited for the next call
        (`KEEP_SECONDS`), or is about to (`REOPEN_SECONDS`: the call has not been sent, and the
        query only parses and reads): the query again, on a new connection."""
        spent.close()
        self._sock = None
        if self._cancelled:
            raise _cancelled_error()
        self._sock = self._warehouse.connect()
        self._token = str(self._send("user_query", PARSE_SECONDS, *self._opening))
        if self._cancelled:  # `cancel` came meanwhile, and may have named the old query
            self._sock.close()
            self._sock = None
            raise _cancelled_error()

    def _send(self, op: str, timeout: float, *args: Any) -> Any:
        """`op` on the query's connection (the lock held)."""
        if self._sock is None:
            raise WarehouseError("the query's connection is closed", 394)
        try:
            answer = _exchange(self._sock, op, args, timeout)
            self._answered = time.monotonic()
            return answer
        except Unanswered:
            self._sock.close()  # an answer that comes late must not be read as the next one's
            self._sock = None
            raise

    def format_query(self, sql: str) -> str:
        return str(self._call("uq_format", PARSE_SECONDS, sql))

    def parse_json(self, sql: str) -> str:
        return str(self._call("uq_parse", PARSE_SECONDS, sql))

    def run(self, sql: str) -> QueryResult:
        return _result(self._call("uq_run", self._run_seconds, sql))

    def cancel(self) -> None:
        """From another thread while `run` waits: on a connection of its own, tried again for up
        to `CANCEL_SECONDS` while the loader process refuses it as busy (having read none of it);
        at once nothing more when the process is gone (the query with it)."""
        self._cancelled = True  # first: a call or a reopen (`_reopen`) after this sends nothing
        try:
            self._warehouse.exchange(
                "uq_cancel", [self._token], PARSE_SECONDS, CANCEL_SECONDS, wait=False
            )
        except Busy:
            log.warning("warehouse_remote.cancel_refused", seconds=CANCEL_SECONDS)
        except WarehouseError:
            pass  # the process is gone, and the query with it

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # the loader process closes the query's connections when this one ends


# -- the loader process's side ------------------------------------------------------------------


class WarehouseServer:
    """Serves `warehouse` on a Unix socket at `path` (its folder must exist, 0700), a thread per
    connection, until `close`."""

    def __init__(self, warehouse: Warehouse, path: Path) -> None:
        self.warehouse = warehouse
        self.path = path
        self._jobs: dict[str, UserQuery] = {}
        self._jobs_lock = threading.Lock()
        #: the connections served now (at most MAX_CONNECTIONS), each until its thread closes it
        #: (socketserver does not keep its daemon threads to join: `close` waits for this instead)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Condition()
        self._closing = False
        #: connections refused since the last `warehouse_server.busy` line, and when that was
        self._refused = 0
        self._busy_logged = float("-inf")
        folder_mode = path.parent.stat().st_mode & 0o777
        if folder_mode & 0o077:
            raise WarehouseError(
                f"the warehouse socket's folder {path.parent} is open to others "
                f"(mode {folder_mode:o}): it must be 0700"
            )
        if path.is_socket():
            path.unlink()  # a socket left by a child that was killed
        elif path.exists() or path.is_symlink():
            raise WarehouseError(f"{path} exists and is not a socket: not replaced")
        self._server = _Server(str(path), _Handler)
        path.chmod(0o600)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="warehouse-server", daemon=True
        )

    def start(self) -> WarehouseServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """No new connection; the user queries running are cancelled, every connection shut
        down, and the connections' threads waited for, up to `CLOSE_SECONDS` in all. A thread
        still in the engine after that is left to end with the process; its query, cancelled,
        is closed by that thread."""
        self._closing = True  # a request read from now on is not run
        self._server.shutdown()
        self._cancel_jobs()
        with self._connections_lock:
            for sock in self._connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._connections_lock:  # each connection's thread releases it as it ends
            ended = self._connections_lock.wait_for(
                lambda: not self._connections, timeout=CLOSE_SECONDS
            )
        self._cancel_jobs()  # any opened meanwhile
        if not ended:
            log.warning("warehouse_server.close_timeout", seconds=CLOSE_SECONDS)

    def _cancel_jobs(self) -> None:
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()

    def admit(self, sock: socket.socket) -> bool:
        """Whether to serve the new connection `sock`: one more than `MAX_CONNECTIONS` is told it
        is refused (if it is this user's) and not served."""
        with self._connections_lock:
            serving = len(self._connections)
            if serving < MAX_CONNECTIONS:
                self._connections.add(sock)
                return True
        self._refused += 1  # (one thread admits: `serve_forever`'s)
        now = time.monotonic()
        if (
            now - self._busy_logged >= BUSY_LOG_SECONDS
        ):  # a flood of refusals is not a flood of lines
            log.warning(
                "warehouse_server.busy",
                connections=serving,
                limit=MAX_CONNECTIONS,
                refused=self._refused,
            )
            self._refused, self._busy_logged = 0, now
        with contextlib.suppress(OSError):
            if _peer_uid(sock) == os.getuid():
                sock.setblocking(False)  # a new connection's buffer takes it whole, or nothing
                _send(sock, [1, "busy", f"busy, {serving} connections open (its limit)", None])
        return False

    def release(self, sock: socket.socket) -> None:
        """Forget `sock`, which is closed next (so `close` never shuts down a closed socket)."""
        with self._connections_lock:
            self._connections.discard(sock)
            self._connections_lock.notify_all()

    # one connection's requests, in order
    def serve(self, sock: socket.socket) -> None:
        """One call per connection; a connection whose call opened a user query (`user_query`)
        then takes only that query's calls (`uq_*`), each within `KEEP_SECONDS` of the last,
        until its `uq_run` is answered or `QUERY_CALLS` calls in all."""
        uid = _peer_uid(sock)
        if uid != os.getuid():
            log.warning("warehouse_server.peer_refused", peer_uid=uid)
            return
        token = ""
        calls = 0
        try:
            # a new connection's request comes at once; only a user query's connection is kept
            while (
                request := self._request(sock, KEEP_SECONDS if token else FRAME_SECONDS)
            ) is not None:
                op, args = request
                calls += 1
                if self._closing:
                    return
                if token and (not op.startswith("uq_") or calls > QUERY_CALLS):
                    log.warning("warehouse_server.not_the_querys_call", op=op[:40], calls=calls)
                    return
                try:
                    answer, token = self._answer(op, args, token)
                except _UnknownOp:
                    log.warning("warehouse_server.unknown_op", op=op[:40])
                    return
                if not self._reply(sock, answer) or not token or op == "uq_run":
                    return  # gone, or its one call (its query's run) answered
        finally:
            if token:
                with self._jobs_lock:
                    job = self._jobs.pop(token, None)
                if job is not None:
                    job.close()

    @staticmethod
    def _request(sock: socket.socket, wait: float) -> tuple[str, list[Any]] | None:
        """The next `[op, args]`, begun within `wait` seconds (None: the connection ends, closed,
        quiet or not a request)."""
        try:
            request = _receive_request(sock, wait)
        except _Idle:
            log.warning("warehouse_server.idle_timeout", seconds=wait)
            return None
        except TimeoutError:
            log.warning("warehouse_server.frame_timeout", seconds=FRAME_SECONDS)
            return None
        except (_Closed, OSError, msgspec.DecodeError):
            return None
        except WarehouseError as exc:  # a frame over the limit
            log.warning("warehouse_server.bad_frame", error=str(exc))
            return None
        if (
            not isinstance(request, list)
            or len(request) != 2
            or not isinstance(request[0], str)
            or not isinstance(request[1], list)
        ):
            log.warning("warehouse_server.bad_request")
            return None
        return request[0], request[1]

    def _answer(self, op: str, args: list[Any], token: str) -> tuple[list[Any], str]:
        """The answer to one operation, and the connection's user query token after it."""
        try:
            if op == "user_query":  # the connection's first call (`serve`)
                token = self._open_job(*args)
                return [0, token], token
            return [0, self._run(op, args, token)], token
        except WarehouseError as exc:
            return [1, "warehouse", str(exc), exc.code], token
        except ValueError as exc:
            return [1, "value", str(exc), None], token
        except _UnknownOp:
            raise
        except TypeError as exc:  # the wrong arguments for the operation
            return [1, "warehouse", f"bad request {op}: {exc}", None], token
        except Exception as exc:  # anything else the engine raised: an answer, not a hang-up
            log.exception("warehouse_server.failed", op=op)
            return [1, "warehouse", f"{type(exc).__name__}: {exc}"[:2000], None], token

    @staticmethod
    def _reply(sock: socket.socket, answer: list[Any]) -> bool:
        """Send `answer` (an error in its place if msgpack cannot carry it); False: gone, or
        not taking it (`SEND_SECONDS`)."""
        sock.settimeout(SEND_SECONDS)
        try:
            try:
                _send(sock, answer)
            except _UNENCODABLE as exc:  # a value msgpack cannot carry (an int over 64 bits)
                _send(sock, [1, "warehouse", f"the answer cannot be sent: {exc}", None])
        except OSError:
            return False
        return True

    def _open_job(self, params: dict[str, Any], limits: dict[str, Any]) -> str:
        job = self.warehouse.user_query(params, SqlLimits(**limits))
        token = uuid.uuid4().hex
        with self._jobs_lock:
            self._jobs[token] = job
        return token

    def _job(self, token: str) -> UserQuery:
        with self._jobs_lock:
            job = self._jobs.get(token)
        if job is None:
            raise WarehouseError("no user query open on this connection")
        return job

    def _run(self, op: str, args: list[Any], token: str) -> Any:
        w = self.warehouse
        if op in ("execute", "insert", "insert_select"):
            getattr(w, op)(*args)
            return None
        if op == "query":
            return _wire(w.query(*args))
        if op == "uq_cancel":
            (wanted,) = args
            with self._jobs_lock:
                job = self._jobs.get(str(wanted))
            if job is not None:
                job.cancel()
            return None
        if op == "uq_format":
            return self._job(token).format_query(*args)
        if op == "uq_parse":
            return self._job(token).parse_json(*args)
        if op == "uq_run":
            return _wire(self._job(token).run(*args))
        raise _UnknownOp(op)


class _UnknownOp(Exception):
    pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    #: the kernel's queue of connections not yet accepted (socketserver's default is 5): a burst
    #: of the worker's calls waits there for `admit`, which answers each at once
    request_queue_size = socket.SOMAXCONN
    owner: WarehouseServer

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, or (over `MAX_CONNECTIONS`) a refusal, at once."""
        if self.owner.admit(request):
            super().process_request(request, client_address)
        else:
            self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        self.owner.release(request)
        super().shutdown_request(request)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.owner.serve(self.request)
