"""`PW_WAREHOUSE_LOADER=process`: the worker runs the warehouse loader as a child process that
owns the embedded warehouse.

The same loader as `PW_WAREHOUSE_LOADER=inprocess` (streams/warehouse_loader.py), run by
`partnerwatch loader --socket PATH` in a process the worker starts, watches and stops
(streams/child_process.py). The embedded chDB engine locks its folder to one process, so the
child opens it, and the worker reaches it through the child for `/v1/sql`, alert actions,
digests and the dedup window's confirmations (`sinks.warehouse_remote.RemoteWarehouse`, over a
Unix socket in a folder of this user's only). With a ClickHouse server (PW_CLICKHOUSE_URL) the
worker queries the server itself and the child only loads it (no `--socket`). Either way the
engine's code, memory and threads, and the loader's consumer, leave the worker's process and its
interpreter lock (docs/performance.md, "The warehouse loader as a child process").

- `pw_loader_process_restarts_total` counts the restarts; the loader resumes from its
  high-water marks and committed offsets, as after a crash of the worker.
- The worker's /metrics shows the loader's own figures (`LOADER_METRICS` in sinks/metrics.py),
  and its /v1/health the child's own health answer (stored events, the loader's errors), with
  whether the child runs.
- Stopping the worker stops the child with SIGTERM (the batch in hand is stored and committed),
  SIGKILL after `STOP_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from pipeline.config import Settings
from sinks import metrics
from sinks.warehouse_remote import RemoteWarehouse
from streams.child_process import ChildProcess

log = structlog.get_logger(__name__)

#: The longest path a Unix socket may have (Linux: 108 bytes with the terminating zero).
SOCKET_PATH_MAX = 107


def _private(folder: Path) -> bool:
    """`folder` is there, a folder (not a link), this user's, and no one else may enter it."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _private_folder() -> tuple[Path, Path]:
    """A new folder only this user can enter (`mkdtemp`: 0700, a name no one held), and the
    socket's path in it."""
    folder = Path(tempfile.mkdtemp(prefix="pw-warehouse-"))
    socket = folder / "warehouse.sock"
    if len(str(socket).encode()) > SOCKET_PATH_MAX:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(
            f"the warehouse socket's path is too long for a Unix socket ({socket}): "
            "set TMPDIR to a shorter folder"
        )
    return folder, socket


class LoaderChild(ChildProcess):
    """One `partnerwatch loader --socket` child at a time, restarted when it exits."""

    name = "loader"
    label = "the warehouse loader process"
    SHOWN = metrics.LOADER_METRICS
    RESTARTS = metrics.LOADER_PROCESS_RESTARTS

    def __init__(self, settings: Settings, *, serve: bool = True) -> None:
        super().__init__(settings)
        #: whether the child serves the warehouse on `socket` (the embedded one; not a server)
        self.serve = serve
        #: 0700, this user's only: the socket's access control
        self.folder, self.socket = _private_folder()
        self.warehouse = RemoteWarehouse(self.socket)
        #: the child's last /v1/health answer
        self.answer: dict[str, Any] = {}

    def prepare(self) -> None:
        """Each child: the socket's folder as it must be, and no answer of an earlier child. A
        folder a tmp cleaner took (or one that is no longer this user's alone) is not made again
        under its old name, which anyone can read in /tmp and take first: a new one is made, and
        the worker's calls go to its socket."""
        self.answer = {}
        if not _private(self.folder):
            log.warning("loader.socket_folder_replaced", gone_or_not_private=str(self.folder))
            self.folder, self.socket = _private_folder()
            self.warehouse.path = self.socket

    def arguments(self) -> list[str]:
        return ["loader", "--socket", str(self.socket)] if self.serve else ["loader"]

    async def reachable(self) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.warehouse.reachable)

    async def refresh(self) -> dict[str, Any]:
        """The child's /v1/health answer now ({} when it does not answer in SCRAPE_SECONDS)."""
        body: Any = {}
        if self._session is not None and self.status == "running":
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with self._session.get(f"http://127.0.0.1:{self.port}/v1/health") as answer:
                    body = await answer.json(content_type=None)
        # no answer now (starting, stuck, gone) is no answer: never an earlier "ok"
        self.answer = body if isinstance(body, dict) else {}
        return self.answer

    async def stop(self) -> None:
        await super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)
