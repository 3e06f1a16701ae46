"""The warehouse's answers the bounded dedup window needs (pipeline/dedup_window.py, bounded
mode): which suspected repeats it holds inside the window, and how far its loader has stored a
ledger partition (before the exact tier may forget ids into the Bloom filters).

Both read the worker's warehouse (the embedded engine its loader process owns, reached over its
socket, which a call waits for while that process restarts; the in-process loader's engine; or the
server of `PW_CLICKHOUSE_URL`) off the event loop. A failure raises: the batch waiting on a
confirmation fails and its partition starts over (`streams/ingest_partition.py`), so a suspected
repeat is never dropped, nor accepted, on a guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pipeline.event import format_ms
from sinks.clickhouse import Warehouse
from sinks.loader_offsets import read_marks

#: How long a confirmation waits for the worker's warehouse to open (the worker is starting).
WAREHOUSE_WAIT_SECONDS = 60.0
#: Ids per lookup query.
LOOKUP_IDS = 5_000

_LOOKUP = (
    "SELECT account_id, event_id, toString(ingested_at) FROM audit.events "
    "WHERE event_id IN {ids:Array(String)}"
)


class WarehouseUnavailable(RuntimeError):
    """The warehouse could not answer: the batch cannot be sequenced yet."""


async def _warehouse() -> Warehouse:
    # Imported here: importing it registers the loader service with the app (the worker's only).
    from streams.loader_instance import loader_service

    waited = 0.0
    while loader_service.warehouse is None and waited < WAREHOUSE_WAIT_SECONDS:
        await asyncio.sleep(0.5)
        waited += 0.5
    if loader_service.warehouse is None:
        raise WarehouseUnavailable("the worker's warehouse is not open")
    return loader_service.warehouse


async def seen_in_window(pairs: Sequence[tuple[str, str]], since_ms: int) -> set[tuple[str, str]]:
    """Which `(account_id, event_id)` pairs audit.events holds with `ingested_at` at or after
    `since_ms` (the window's start)."""
    warehouse = await _warehouse()
    wanted = set(pairs)
    since = format_ms(since_ms).replace("T", " ").rstrip("Z")
    found: set[tuple[str, str]] = set()
    ids = sorted({e for _, e in wanted})
    loop = asyncio.get_running_loop()
    for start in range(0, len(ids), LOOKUP_IDS):
        result = await loop.run_in_executor(
            None, warehouse.query, _LOOKUP, {"ids": ids[start : start + LOOKUP_IDS]}
        )
        for account, event_id, ingested in result.rows:
            pair = (str(account), str(event_id))
            if pair in wanted and str(ingested).replace("T", " ")[:23] >= since:
                found.add(pair)
    return found


async def stored_through(ledger_topic: str, partition: int) -> int:
    """The ledger offset below which the warehouse holds every entry of `partition` (0: none)."""
    warehouse = await _warehouse()
    marks = await asyncio.get_running_loop().run_in_executor(
        None, read_marks, warehouse, ledger_topic
    )
    mark = marks.get(partition)
    return 0 if mark is None else mark.start
