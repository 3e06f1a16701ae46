"""The worker's /v1/health with its warehouse loader in a child process
(`PW_WAREHOUSE_LOADER=process`, streams/loader_child.py), without a broker: a child that is not
running, or whose warehouse does not answer yet, is not ok; a running child's own answer decides.
(The process itself, killed, restarted and orphaned: tests/integration/test_loader_child.py.)"""

from __future__ import annotations

from typing import Any

from pipeline.config import Settings
from streams.loader_child import LoaderChild
from streams.warehouse_service import health

OK_ANSWER = {
    "status": "ok",
    "stored_events": 12,
    "stored_alerts": 3,
    "skipped_stored": 0,
    "warehouse_error": "",
    "loader_crashes": 0,
    "loader_dead_letters": 1,
    "warehouse_loader": "process",
}


def _health(
    process: dict[str, Any], answer: dict[str, Any], open_: bool
) -> tuple[int, dict[str, Any]]:
    return health(None, True, loader_process={**process, "answer": answer}, warehouse_open=open_)


def test_the_child_decides_the_workers_health() -> None:
    child = LoaderChild(Settings.from_env({}))
    try:
        assert child.arguments()[:2] == ["loader", "--socket"]
        assert child.folder.stat().st_mode & 0o777 == 0o700
        starting = child.health()
        assert _health(starting, {}, False)[0] == 503
        child.status = "running"
        running = child.health()
        code, body = _health(running, {}, False)  # the child has not opened the warehouse yet
        assert (code, body["status"], body["warehouse_loader"]) == (503, "starting", "process")
        code, body = _health(running, OK_ANSWER, True)
        assert code == 200 and body["stored_events"] == 12 and body["loader_dead_letters"] == 1
        assert (
            body["loader_process"]["status"] == "running" and "answer" not in body["loader_process"]
        )
        failing = {**OK_ANSWER, "status": "degraded", "warehouse_error": "the loader crashed (2x)"}
        code, body = _health(running, failing, True)
        assert (code, body["warehouse_error"]) == (503, "the loader crashed (2x)")
        child.status, child.last_exit = (
            "restarting",
            "the warehouse loader process was ended by SIGKILL after 4 s",
        )
        code, body = _health(child.health(), OK_ANSWER, True)  # a stale answer does not count
        assert (code, body["status"]) == (503, "degraded") and "SIGKILL" in body["warehouse_error"]
        code, body = _health(running, {**OK_ANSWER, "status": "<b>odd</b>"}, True)
        assert (code, body["status"]) == (503, "degraded")
    finally:
        import shutil

        shutil.rmtree(child.folder, ignore_errors=True)


def test_with_a_server_the_child_only_loads() -> None:
    child = LoaderChild(Settings.from_env({}), serve=False)
    try:
        assert child.arguments() == ["loader"]
    finally:
        import shutil

        shutil.rmtree(child.folder, ignore_errors=True)


def test_a_socket_folder_that_is_gone_or_not_private_is_replaced_not_made_again() -> None:
    """A tmp cleaner takes the folder, and another user may create its name (anyone can read it
    in /tmp) first: the next child gets a new private folder, and the worker's calls follow."""
    import os
    import shutil

    child = LoaderChild(Settings.from_env({}))
    folders = [child.folder]
    try:
        first = child.folder
        child.prepare()  # as it is: kept
        assert child.folder == first and child.warehouse.path == child.socket
        shutil.rmtree(first)
        first.mkdir(mode=0o755)  # the old name, taken (here by this user, open to others)
        child.prepare()
        folders.append(child.folder)
        assert child.folder != first and child.socket.parent == child.folder
        assert child.folder.stat().st_mode & 0o777 == 0o700
        assert child.warehouse.path == child.socket
        assert child.arguments() == ["loader", "--socket", str(child.socket)]
        second = child.folder
        shutil.rmtree(second)  # gone
        child.prepare()
        folders.append(child.folder)
        assert child.folder not in (first, second) and child.folder.is_dir()
        os.rmdir(first)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
