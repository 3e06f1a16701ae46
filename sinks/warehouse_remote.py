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
  and datetimes; nothing is unpickled, nothing becomes code. A frame over `MAX_FRAME` bytes, or
  an unknown operation, ends that connection.
- **Errors.** The engine's error comes back as the same `WarehouseError` (message and code); a
  user query's parser errors as `ValueError`, as in-process. A child that is gone or restarting
  is a `WarehouseError` without a code ("not reachable"), as a ClickHouse server that is down.
- **One connection per call**, none kept: a call is never retried on another connection (an
  insert must not run twice), and a child restarted between two calls is simply met anew. A user
  query holds its own connection from `user_query` to `close`; `cancel` comes on another one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import structlog

from sinks.user_sql import SqlLimits, UserQuery
from sinks.warehouse import InsertColumns, QueryResult, Row, Warehouse, WarehouseError

log = structlog.get_logger(__name__)

#: The largest frame either side reads (a user query's answer is bounded by PW_SQL_MAX_RESULT_BYTES
#: as JSON; its msgpack is smaller).
MAX_FRAME = 512 * 1024 * 1024
_HEADER = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class _Closed(Exception):
    """The other side closed the connection."""


def _send(sock: socket.socket, value: Any) -> None:
    body = _encoder.encode(value)
    sock.sendall(_HEADER.pack(len(body)) + body)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise _Closed
        got += n
    return bytes(buffer)


def _receive(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise WarehouseError(f"a warehouse frame of {size} bytes is over the limit of {MAX_FRAME}")
    return _decoder.decode(_receive_exactly(sock, size))


def _result(value: Any) -> QueryResult:
    columns, types, rows = value
    return QueryResult(list(columns), list(types), list(rows))


# -- the worker's side --------------------------------------------------------------------------


class RemoteWarehouse:
    """The `Warehouse` of the loader process at `path` (a Unix socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> socket.socket:
        """A new connection to the loader process (WarehouseError when it does not answer)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise WarehouseError(
                f"the warehouse process is not reachable ({self.path}): {exc.strerror or exc}"
            ) from None
        return sock

    def reachable(self) -> bool:
        """Whether the loader process answers on its socket now."""
        try:
            self.connect().close()
        except WarehouseError:
            return False
        return True

    def call(self, op: str, *args: Any) -> Any:
        """One operation on a connection of its own."""
        sock = self.connect()
        try:
            return _exchange(sock, op, args)
        finally:
            sock.close()

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


def _exchange(sock: socket.socket, op: str, args: Sequence[Any]) -> Any:
    try:
        _send(sock, [op, list(args)])
        answer = _receive(sock)
    except (OSError, _Closed) as exc:
        why = "it closed the connection" if isinstance(exc, _Closed) else str(exc)
        raise WarehouseError(f"the warehouse process did not answer ({op}): {why}") from None
    if answer[0] == 0:
        return answer[1]
    _, kind, message, code = answer
    if kind == "value":
        raise ValueError(message)
    raise WarehouseError(message, code)


class _RemoteUserQuery:
    """A user query in the loader process, on a connection of its own until `close`."""

    def __init__(
        self, warehouse: RemoteWarehouse, params: dict[str, Any], limits: SqlLimits
    ) -> None:
        self._warehouse = warehouse
        self._sock: socket.socket | None = warehouse.connect()
        self._lock = threading.Lock()
        try:
            self._token = str(_exchange(self._sock, "user_query", [params, asdict(limits)]))
        except BaseException:
            self.close()
            raise

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            if self._sock is None:
                raise WarehouseError("the query was closed", 394)
            return _exchange(self._sock, op, args)

    def format_query(self, sql: str) -> str:
        return str(self._call("uq_format", sql))

    def parse_json(self, sql: str) -> str:
        return str(self._call("uq_parse", sql))

    def run(self, sql: str) -> QueryResult:
        return _result(self._call("uq_run", sql))

    def cancel(self) -> None:
        """From another thread while `run` waits: on a connection of its own."""
        with contextlib.suppress(WarehouseError):
            self._warehouse.call("uq_cancel", self._token)

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
        folder_mode = path.parent.stat().st_mode & 0o777
        if folder_mode & 0o077:
            raise WarehouseError(
                f"the warehouse socket's folder {path.parent} is open to others "
                f"(mode {folder_mode:o}): it must be 0700"
            )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a child that was killed
        self._server = _Server(str(path), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="warehouse-server", daemon=True
        )

    def start(self) -> WarehouseServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._jobs_lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.cancel()

    # one connection's requests, in order
    def serve(self, sock: socket.socket) -> None:
        uid = _peer_uid(sock)
        if uid != os.getuid():
            log.warning("warehouse_server.peer_refused", peer_uid=uid)
            return
        token = ""
        try:
            while True:
                try:
                    request = _receive(sock)
                except (_Closed, OSError):
                    return
                except WarehouseError as exc:  # a frame over the limit: the connection ends
                    log.warning("warehouse_server.bad_frame", error=str(exc))
                    return
                if (
                    not isinstance(request, list)
                    or len(request) != 2
                    or not isinstance(request[0], str)
                    or not isinstance(request[1], list)
                ):
                    log.warning("warehouse_server.bad_request")
                    return
                op, args = request
                try:
                    if op == "user_query":
                        if token:
                            raise WarehouseError("one user query per connection")
                        token = self._open_job(*args)
                        value: Any = token
                    else:
                        value = self._run(op, args, token)
                    answer: list[Any] = [0, value]
                except WarehouseError as exc:
                    answer = [1, "warehouse", str(exc), exc.code]
                except ValueError as exc:
                    answer = [1, "value", str(exc), None]
                except _UnknownOp:
                    log.warning("warehouse_server.unknown_op", op=op[:40])
                    return
                except TypeError as exc:  # the wrong arguments for the operation
                    answer = [1, "warehouse", f"bad request {op}: {exc}", None]
                try:
                    _send(sock, answer)
                except OSError:
                    return
        finally:
            if token:
                with self._jobs_lock:
                    job = self._jobs.pop(token, None)
                if job is not None:
                    job.close()

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
        calls: dict[str, Callable[..., Any]] = {
            "execute": w.execute,
            "insert": w.insert,
            "insert_select": w.insert_select,
        }
        if op in calls:
            calls[op](*args)
            return None
        if op == "query":
            result = w.query(*args)
            return [result.columns, result.types, result.rows]
        if op == "uq_cancel":
            (wanted,) = args
            with self._jobs_lock:
                job = self._jobs.get(str(wanted))
            if job is not None:
                job.cancel()
            return None
        if op in ("uq_format", "uq_parse", "uq_run"):
            job = self._job(token)
            if op == "uq_format":
                return job.format_query(*args)
            if op == "uq_parse":
                return job.parse_json(*args)
            result = job.run(*args)
            return [result.columns, result.types, result.rows]
        raise _UnknownOp(op)


class _UnknownOp(Exception):
    pass


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    owner: WarehouseServer

    def server_bind(self) -> None:
        old = os.umask(0o177)  # the socket itself 0600, whatever the folder
        try:
            super().server_bind()
        finally:
            os.umask(old)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.owner.serve(self.request)
