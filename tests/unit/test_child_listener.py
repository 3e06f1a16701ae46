"""The child processes' loopback port (streams/child_process.py): the worker binds it and listens
before the child starts, the child serves on the inherited socket, and the worker holds its copy
until the child has exited, so no other local process can take the port in between (a port
number handed over to be bound later could be: the child then could not start, or another process
answered the worker's scrapes and health checks). No broker: the child here is a small script
that serves /metrics on the socket it inherits, as `partnerwatch provider-stage` does."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

import pytest
from typer.testing import CliRunner

from partnerwatch.main import cli
from pipeline.config import Settings
from streams import child_process
from streams.child_process import ChildProcess, inherited_listener, serve_metrics

#: A child: the worker's socket from `--metrics-fd`, /metrics served on it, then wait.
CHILD = """
import sys, time
from prometheus_client import Counter
from streams.child_process import inherited_listener, serve_metrics
Counter("pw_test_child_served", "served by the child").inc()
serve_metrics(inherited_listener(int(sys.argv[sys.argv.index("--metrics-fd") + 1])))
time.sleep(120)
"""


#: A child that closes the socket it inherited and stays: the port must still be held.
CLOSING_CHILD = """
import os, sys, time
os.close(int(sys.argv[sys.argv.index("--metrics-fd") + 1]))
print("closed", flush=True)
time.sleep(120)
"""


class ScriptChild(ChildProcess):
    name = "test_child"
    label = "the test child"

    def __init__(self, settings: Settings, script: str = CHILD) -> None:
        super().__init__(settings)
        self.commands: list[list[str]] = []
        self.script = script

    def arguments(self) -> list[str]:
        return ["provider-stage"]

    def command(self) -> list[str]:
        real = super().command()  # what the worker would run: `--metrics-fd` of the socket
        self.commands.append(real)
        fd = real[real.index("--metrics-fd") + 1]
        return [sys.executable, "-c", self.script, "--metrics-fd", fd]


def _taken(port: int) -> bool:
    """Whether another socket can no longer bind the port (as another local user would try)."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            return True
        return False


def _get(port: int) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_port_is_held_from_before_the_child_starts_until_it_has_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(child_process, "RESTART_MIN_SECONDS", 3.0)  # time to look in between

    async def scenario() -> None:
        child = ScriptChild(Settings.from_env({}))
        await child.start()
        assert child.proc is not None and child.port
        port, first_pid = child.port, child.proc.pid
        command = child.commands[0]
        assert "--metrics-fd" in command and "--metrics-port" not in command
        assert _taken(port)  # bound and listening before the child even runs
        assert "pw_test_child_served_total 1.0" in await asyncio.to_thread(_get, port)
        watcher = asyncio.create_task(child.supervise())
        os.kill(first_pid, signal.SIGKILL)
        for _ in range(100):  # the worker sees the child gone
            if child.status == "restarting":
                break
            await asyncio.sleep(0.05)
        assert child.status == "restarting"
        assert _taken(port) is False  # released once the child was reaped...
        for _ in range(100):  # ...and the next child gets a new socket, bound before it runs
            if child.status == "running" and child.proc is not None:
                break
            await asyncio.sleep(0.1)
        assert child.proc is not None and child.proc.pid != first_pid
        assert _taken(child.port)
        assert "pw_test_child_served_total" in await asyncio.to_thread(_get, child.port)
        second = child.port
        await child.stop()
        watcher.cancel()
        assert _taken(second) is False  # stopped: nothing held
        assert child._listening is None

    asyncio.run(scenario())


def test_while_the_child_runs_the_worker_still_holds_the_port() -> None:
    """The worker's copy keeps the port bound even if the child closed its own: no one else can
    take it and answer in the child's place until the worker has seen the child exit."""

    async def scenario() -> None:
        child = ScriptChild(Settings.from_env({}), CLOSING_CHILD)
        await child.start()
        try:
            await asyncio.sleep(1.5)  # the child has started and closed its copy
            assert child.proc is not None and child.proc.returncode is None
            assert _taken(child.port)
        finally:
            await child.stop()

    asyncio.run(scenario())


def test_a_client_that_goes_quiet_is_dropped_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(child_process._QuietHandler, "timeout", 0.3)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    serve_metrics(inherited_listener(os.dup(listening.fileno())))
    listening.close()
    with socket.create_connection(("127.0.0.1", port)) as quiet:
        quiet.sendall(b"GET /metr")  # and nothing more
        quiet.settimeout(5)
        assert quiet.recv(100) == b""  # dropped by the server
    assert "# TYPE" in _get(port)  # and it still serves
    assert "Traceback" not in capfd.readouterr().err


def _refused(make: Any) -> str:
    sock = make()
    try:
        with pytest.raises(ValueError) as caught:
            inherited_listener(sock.fileno())
        return str(caught.value)
    finally:
        sock.close()


def test_an_inherited_descriptor_that_is_no_loopback_listener_is_refused() -> None:
    def udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s

    def not_listening() -> socket.socket:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        return s

    def every_address() -> socket.socket:
        return socket.create_server(("0.0.0.0", 0))  # refused: not loopback

    for make in (udp, not_listening, every_address):
        assert "is not a listening TCP socket on 127.0.0.1" in _refused(make)
    read, write = os.pipe()
    try:
        with pytest.raises(ValueError, match="is not an open socket"):
            inherited_listener(read)
    finally:
        os.close(read)
        os.close(write)
    good = socket.create_server(("127.0.0.1", 0))
    try:
        with inherited_listener(os.dup(good.fileno())) as taken:
            assert taken.getsockname() == good.getsockname()
    finally:
        good.close()


@pytest.mark.parametrize("command", ["provider-stage", "loader"])
def test_the_commands_refuse_a_metrics_fd_that_is_not_a_listening_socket(command: str) -> None:
    read, write = os.pipe()
    try:
        result = CliRunner().invoke(cli, [command, "--metrics-fd", str(read)])
    finally:
        for fd in (read, write):
            with contextlib.suppress(OSError):
                os.close(fd)
    assert result.exit_code == 2, result.output
    assert "cannot serve /metrics" in result.output
    assert "is not an open socket" in result.output


def test_work_before_the_childs_loop_is_given_up_when_the_worker_is_gone() -> None:
    """`unless_parent_gone`: the work's value, or its exception, when it ends; None as soon as
    the parent is gone or a stop is asked for, while the work still runs (`partnerwatch
    provider-stage` checks the topics this way: with a broker that stopped answering,
    `ensure_topics` retries for 30 s)."""
    from streams.child_process import unless_parent_gone

    parent = os.getppid()
    assert unless_parent_gone(parent, lambda: False, "t", lambda: 42) == 42
    assert unless_parent_gone(parent, lambda: False, "t", lambda: []) == []
    with pytest.raises(ValueError, match="boom"):
        unless_parent_gone(
            parent, lambda: False, "t", lambda: (_ for _ in ()).throw(ValueError("boom"))
        )
    release = threading.Event()
    try:
        started = time.monotonic()
        # a pid that is not this process's parent: the worker is gone
        wait = lambda: release.wait(30)  # noqa: E731  # False after 30 s: not None, so not given up on
        assert unless_parent_gone(parent + 1, lambda: False, "t", wait) is None
        stopping = threading.Event()
        threading.Timer(0.3, stopping.set).start()
        assert unless_parent_gone(parent, stopping.is_set, "t", wait) is None
        assert time.monotonic() - started < 20  # neither waited for the work, which never ends
    finally:
        release.set()
