"""Produce requests written without copying their record batches
(streams/faust_internals.py `send_produce_requests_without_copies`): the pieces written join to
exactly the bytes aiokafka's own `AIOKafkaConnection.send` writes, for every produce request
version and for requests of other shapes, and a long record batch is written as it is."""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import aiokafka.conn as aiokafka_conn
import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.produce import ProduceRequest, ProduceRequest_v8
from aiokafka.protocol.transaction import AddPartitionsToTxnRequest, TxnOffsetCommitRequest

from streams import faust_internals
from streams.faust_internals import _AS_IS, request_pieces

ALL_VERSIONS = {ProduceRequest.API_KEY: (0, 8)}


def _library_message(request_struct: Any, correlation_id: int = 7) -> bytes:
    """What aiokafka 0.14's `AIOKafkaConnection.send` writes (aiokafka/conn.py)."""
    header = request_struct.build_request_header(correlation_id=correlation_id, client_id="pw")
    message = header.encode() + request_struct.encode()
    return struct.pack(">i", len(message)) + message


def _ours(request_struct: Any, correlation_id: int = 7) -> list[Any]:
    header = request_struct.build_request_header(correlation_id=correlation_id, client_id="pw")
    return request_pieces(header, request_struct)


def _batch(rng: random.Random, size: int) -> bytearray:
    return bytearray(rng.randbytes(size))


def _topics(rng: random.Random) -> list[tuple[str, list[tuple[int, Any]]]]:
    sizes = [0, 1, 100, _AS_IS - 1, _AS_IS, _AS_IS + 1, 1024 * 1024]
    return [
        (
            f"pw.topic-{t}-\u00e9",
            [
                (p, None if rng.random() < 0.1 else _batch(rng, rng.choice(sizes)))
                for p in range(rng.randint(0, 4))
            ],
        )
        for t in range(rng.randint(0, 3))
    ]


@pytest.mark.parametrize("version", range(9))
def test_every_produce_version_writes_the_librarys_bytes(version: int) -> None:
    rng = random.Random(version)
    for _ in range(20):
        txn = None if version < 3 or rng.random() < 0.3 else f"pw-ingest-{rng.randint(0, 99)}"
        request = ProduceRequest(txn, rng.choice([-1, 0, 1]), 30_000, _topics(rng))
        if version == 8:  # aiokafka does not pick v8 yet; its schema is v7's
            request_struct: Any = request.build(ProduceRequest_v8)
        else:
            request_struct = request.prepare({ProduceRequest.API_KEY: (version, version)})
        assert version == request_struct.API_VERSION
        pieces = _ours(request_struct)
        assert b"".join(pieces) == _library_message(request_struct)


def test_a_long_record_batch_is_written_as_it_is() -> None:
    rng = random.Random(1)
    big, small = _batch(rng, 1024 * 1024), _batch(rng, 1000)
    other = _batch(rng, _AS_IS)
    request = ProduceRequest(
        "pw-ingest-0",
        -1,
        30_000,
        [("pw.ledger", [(0, big), (1, small)]), ("pw.state", [(0, other)])],
    )
    pieces = _ours(request.prepare(ALL_VERSIONS))
    assert any(piece is big for piece in pieces)
    assert any(piece is other for piece in pieces)
    assert not any(piece is small for piece in pieces)  # short: joined with its neighbours
    # the short parts between the long ones are joined: size + header + fields, big, the
    # next fields, other (nothing after it: the request ends with that batch)
    assert len(pieces) == 4


@pytest.mark.parametrize(
    "request_struct",
    [
        FetchRequest(
            max_wait_time=500,
            min_bytes=1,
            max_bytes=52_428_800,
            isolation_level=1,
            topics=[("pw.actions", [(0, 12, 1_048_576), (3, 0, 1_048_576)])],
        ).prepare({FetchRequest.API_KEY: (4, 4)}),
        AddPartitionsToTxnRequest(
            transactional_id="pw-ingest-1",
            producer_id=4,
            producer_epoch=2,
            topics=[("pw.ledger", [0, 1]), ("pw.state", [1])],
        ).prepare({AddPartitionsToTxnRequest.API_KEY: (0, 0)}),
        TxnOffsetCommitRequest(
            transactional_id="pw-ingest-1",
            group_id="pw-ingest",
            producer_id=4,
            producer_epoch=2,
            topics=[("pw.actions", [(1, 99, "")])],
        ).prepare({TxnOffsetCommitRequest.API_KEY: (0, 0)}),
    ],
    ids=["fetch", "add-partitions", "txn-offset-commit"],
)
def test_other_requests_encode_the_same(request_struct: Any) -> None:
    """The encoder walks any request's schema; only produce requests are sent through it, but
    it must not be specific to their shape to be right for them."""
    assert b"".join(_ours(request_struct)) == _library_message(request_struct)


class _Writer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def writelines(self, pieces: list[Any]) -> None:
        self.written.append(b"".join(bytes(p) for p in pieces))

    async def drain(self) -> None:
        return None


def _connection(loop: asyncio.AbstractEventLoop) -> Any:
    conn = AIOKafkaConnection.__new__(AIOKafkaConnection)
    conn._writer = _Writer()
    conn._versions = ALL_VERSIONS
    conn._client_id = "pw"
    conn._correlation_id = 0
    conn._requests = __import__("collections").deque()
    conn._loop = loop
    conn._request_timeout = 30
    conn._host, conn._port = "127.0.0.1", 9092
    return conn


@pytest.mark.parametrize("acks", [-1, 0])
def test_the_patched_send_writes_what_the_library_writes(acks: int) -> None:
    rng = random.Random(acks)
    loop = asyncio.new_event_loop()
    try:
        request = ProduceRequest(
            "pw-ingest-0", acks, 30_000, _topics(rng) or [("t", [(0, _batch(rng, 2 * _AS_IS))])]
        )
        library, ours = _connection(loop), _connection(loop)
        waiting = [
            faust_internals._LIBRARY_SEND(library, request, acks != 0),
            faust_internals._send_without_copies(ours, request, acks != 0),
        ]
        assert ours._writer.written == library._writer.written
        assert len(ours._writer.written) == 1
        # the same bookkeeping: a response awaited (acks) or not (acks=0)
        assert [c for c, _, _ in ours._requests] == [c for c, _, _ in library._requests]
        assert len(ours._requests) == (0 if acks == 0 else 1)
        for fut in (*library._requests, *ours._requests):
            fut[2].cancel()
        for coro in waiting:
            coro.close()
    finally:
        loop.close()


def test_other_requests_take_the_librarys_own_send() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = _connection(loop)
        conn._writer.writelines = None  # the library's send writes with `write`
        request = AddPartitionsToTxnRequest("pw-ingest-1", 4, 2, [("pw.ledger", [0])])
        conn._versions = {AddPartitionsToTxnRequest.API_KEY: (0, 0)}
        waiting = faust_internals._send_without_copies(conn, request)
        assert conn._writer.written == [_library_message(request.prepare(conn._versions), 1)]
        conn._requests[0][2].cancel()
        waiting.close()
    finally:
        loop.close()


def test_installed_on_the_connection_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AIOKafkaConnection, "send", faust_internals._LIBRARY_SEND)
    faust_internals.send_produce_requests_without_copies()
    assert AIOKafkaConnection.send is faust_internals._send_without_copies


def test_no_connection_and_a_broken_one_fail_as_the_librarys_do() -> None:
    """No writer: `KafkaConnectionError` before anything is encoded; a write that fails with
    OSError: the connection closed (as broken) and `KafkaConnectionError` raised."""
    loop = asyncio.new_event_loop()
    try:
        request = ProduceRequest("pw-ingest-0", -1, 30_000, [("t", [(0, b"x")])])
        conn = _connection(loop)
        conn._writer = None
        with pytest.raises(KafkaConnectionError, match="No connection"):
            faust_internals._send_without_copies(conn, request)

        class Broken(_Writer):
            def writelines(self, pieces: list[Any]) -> None:
                raise BrokenPipeError("gone")

        closed: list[Any] = []
        conn = _connection(loop)
        conn._writer = Broken()
        conn.close = lambda reason=None, exc=None: closed.append(reason)
        with pytest.raises(KafkaConnectionError, match="broken: gone"):
            faust_internals._send_without_copies(conn, request)
        assert closed == [aiokafka_conn.CloseReason.CONNECTION_BROKEN]
        assert not conn._requests
    finally:
        loop.close()


def test_a_real_uvloop_stream_delivers_the_librarys_bytes() -> None:
    """Over a socket pair with a small send buffer, so that uvloop writes the pieces in several
    goes (keeping views of what is left): the peer reads exactly aiokafka's own message."""
    import socket

    import uvloop

    rng = random.Random(5)
    big = _batch(rng, 1024 * 1024)
    request = ProduceRequest(
        "pw-ingest-0", -1, 30_000, [("pw.ledger", [(0, big), (1, _batch(rng, 300))])]
    )

    async def main() -> tuple[bytes, bytes]:
        ours, peer = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peer.setblocking(False)
        _, writer = await asyncio.open_connection(sock=ours)
        loop = asyncio.get_running_loop()
        conn = _connection(loop)
        conn._writer = writer
        waiting = faust_internals._send_without_copies(conn, request)
        correlation_id = conn._requests[0][0]
        expected = _library_message(request.prepare(ALL_VERSIONS), correlation_id)
        received = bytearray()
        while len(received) < len(expected):
            received += await loop.sock_recv(peer, 65536)
        conn._requests[0][2].cancel()
        waiting.close()
        writer.close()
        peer.close()
        return bytes(received), expected

    received, expected = uvloop.run(main())
    assert received == expected
