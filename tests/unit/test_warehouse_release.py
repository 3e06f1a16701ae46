"""The embedded warehouse hands back the memory its engine freed, after a batch, above a limit.

chDB's allocator keeps what an insert or a merge freed; while the warehouse loads, that kept
memory was about 250 MiB of the worker's peak RSS (docs/performance.md). After each batch the
loader asks the engine to give it back (`SYSTEM JEMALLOC PURGE`) while the process's RSS is above
`PW_WAREHOUSE_RELEASE_ABOVE_MIB`. These tests use a real embedded warehouse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from pipeline.config import Settings
from sinks.clickhouse import EmbeddedWarehouse, WarehouseError
from sinks.metrics import WAREHOUSE_MEMORY_RELEASES
from streams.trim_thread import rss_mib
from streams.warehouse_loader import WarehouseLoader


class Counting(EmbeddedWarehouse):
    """The real embedded warehouse, counting `release_memory` calls (and failing them on demand)."""

    def __init__(self, path: Path, refuse: bool = False) -> None:
        super().__init__(path)
        self.releases = 0
        self.refuse = refuse

    def release_memory(self) -> None:
        self.releases += 1
        if self.refuse:
            raise WarehouseError("Code: 344. SYSTEM JEMALLOC PURGE is not supported (no jemalloc)")
        super().release_memory()


def loader(tmp_path: Path, limit: int, refuse: bool = False) -> tuple[WarehouseLoader, Counting]:
    settings = Settings.from_env(
        {"PW_DATA_DIR": str(tmp_path), "PW_WAREHOUSE_RELEASE_ABOVE_MIB": str(limit)}
    )
    warehouse = Counting(tmp_path / "warehouse", refuse)
    return WarehouseLoader(settings, warehouse), warehouse


def released() -> float:
    return WAREHOUSE_MEMORY_RELEASES._value.get()


def test_the_engine_releases_its_freed_memory(tmp_path: Path) -> None:
    warehouse = EmbeddedWarehouse(tmp_path / "warehouse")
    try:
        warehouse.release_memory()  # the real statement on the bundled engine: no error
    finally:
        warehouse.close()


def test_above_the_limit_every_batch_releases_and_is_counted(tmp_path: Path) -> None:
    held = rss_mib()
    assert held is not None and held > 1  # this process holds more than 1 MiB
    load, warehouse = loader(tmp_path, limit=1)
    before = released()
    for _ in range(3):
        load._release_memory()
    assert warehouse.releases == 3 and released() - before == 3
    warehouse.close()


@pytest.mark.parametrize("limit", [0, 10_000_000], ids=["never", "below-the-limit"])
def test_never_or_below_the_limit_nothing_is_released(tmp_path: Path, limit: int) -> None:
    load, warehouse = loader(tmp_path, limit)
    before = released()
    load._release_memory()
    assert warehouse.releases == 0 and released() == before
    warehouse.close()


def test_an_engine_that_cannot_release_is_asked_once_and_the_loader_goes_on(
    tmp_path: Path,
) -> None:
    load, warehouse = loader(tmp_path, limit=1, refuse=True)
    before = released()
    with structlog.testing.capture_logs() as logs:
        load._release_memory()
        load._release_memory()
    assert warehouse.releases == 1 and released() == before
    assert [e["event"] for e in logs] == ["warehouse.release_memory_unsupported"]
    assert "not supported" in logs[0]["error"]
    warehouse.close()


def test_a_server_warehouse_is_never_asked(tmp_path: Path) -> None:
    """A ClickHouse server's memory is the server's: only the embedded engine is in this process."""
    load, warehouse = loader(tmp_path, limit=1)

    class Server:
        asked = 0

        def release_memory(self) -> None:
            Server.asked += 1

    load.warehouse = Server()  # type: ignore[assignment]
    load._release_memory()
    assert Server.asked == 0
    warehouse.close()
