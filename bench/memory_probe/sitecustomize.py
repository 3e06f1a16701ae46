"""A memory probe for bench/worker_memory.py, loaded into the worker it starts (this folder is put
on the worker's PYTHONPATH, and Python imports `sitecustomize` at start-up). Nothing of the
project imports it.

When `BENCH_MEMORY_PROBE` names a file, SIGRTMIN+5 makes the worker's main thread (its event loop,
between two steps) append one JSON line to that file: what glibc's allocator holds
(`malloc_info`: per arena, bytes taken from the system and bytes free in it), what Python's
object allocator holds (`sys._debugmallocstats`), and the sizes of the worker's own buffers and
state (per partition of the ingest service: records pending, accounts, open alerts, chain heads,
ids held exactly, filter bytes; the provider stage's buffers; the warehouse loader's batch),
with `deep` sizes (sys.getsizeof over everything reachable, shared objects counted once) when
the file `<BENCH_MEMORY_PROBE>.deep` exists.
"""

from __future__ import annotations

import os

if os.environ.get("BENCH_MEMORY_PROBE"):
    import signal

    def _malloc_info() -> dict[str, int]:
        import ctypes
        import re
        import tempfile

        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        with tempfile.NamedTemporaryFile(suffix=".xml") as out:
            fp = libc.fopen(out.name.encode(), b"w")
            libc.malloc_info(0, fp)
            libc.fclose(fp)
            text = open(out.name).read()  # noqa: SIM115
        tail = text[text.rfind("</heap>") :]
        system = re.search(r'<system type="current" size="(\d+)"', tail)
        free = sum(
            int(v)
            for v in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', tail)
        )
        mmap = re.search(r'<total type="mmap" count="\d+" size="(\d+)"', tail)
        heaps = len(re.findall(r"<heap nr=", text))
        return {
            "arenas": heaps,
            "system_bytes": int(system[1]) if system else -1,
            "free_bytes": free,
            "mmapped_bytes": int(mmap[1]) if mmap else -1,
        }

    def _pymalloc() -> dict[str, int]:
        import re
        import sys
        import tempfile

        with tempfile.TemporaryFile() as out:
            saved = os.dup(2)
            try:
                os.dup2(out.fileno(), 2)
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            out.seek(0)
            text = out.read().decode(errors="replace")

        def field(name: str) -> int:
            m = re.search(rf"# bytes in {name}\s*=\s*([\d,]+)", text)
            return int(m[1].replace(",", "")) if m else -1

        arenas = re.search(r"(\d+) arenas \* (\d+) bytes/arena\s*=\s*([\d,]+)", text)
        return {
            "arenas_bytes": int(arenas[3].replace(",", "")) if arenas else -1,
            "allocated_blocks_bytes": field("allocated blocks"),
            "available_blocks_bytes": field("available blocks"),
        }

    def _deep(root: object) -> int:
        import sys

        seen: set[int] = set()
        stack = [root]
        total = 0
        atomic = (str, bytes, int, float, bool, type(None))
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            total += sys.getsizeof(obj)
            if isinstance(obj, atomic):
                continue
            if isinstance(obj, dict):
                stack.extend(obj.keys())
                stack.extend(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
                stack.extend(obj)  # type: ignore[arg-type]
            else:
                nbytes = getattr(obj, "nbytes", None)
                if isinstance(nbytes, int):
                    total += nbytes
                    continue
                if hasattr(obj, "__dict__"):
                    stack.append(vars(obj))
                for slot in getattr(type(obj), "__slots__", ()) or ():
                    if hasattr(obj, slot):
                        stack.append(getattr(obj, slot))
                fields = getattr(type(obj), "__struct_fields__", None)
                if fields:
                    stack.extend(getattr(obj, f) for f in fields)
        return total

    def _worker(deep: bool) -> dict[str, object]:
        import sys

        out: dict[str, object] = {}
        ingest = sys.modules.get("streams.ingest")
        if ingest is not None:
            parts = {}
            for p, part in ingest.ingest_service.partitions.items():
                row: dict[str, object] = {"pending": len(part.pending)}
                state = part.state
                if state is not None:
                    led = state.ledger
                    row.update(
                        accounts=len(state.accounts),
                        open_alerts=len(state.open_alerts),
                        heads=len(led.heads),
                        exact_ids=led.seen_count(),
                        filter_bytes=sum(int(f.array.nbytes) for f in led.filters.values()),
                        filters=len(led.filters),
                    )
                    if deep:
                        row.update(
                            deep_accounts=_deep(state.accounts),
                            deep_open_alerts=_deep(state.open_alerts),
                            deep_heads=_deep(led.heads),
                            deep_exact=_deep((led.exact, getattr(led, "runs", None))),
                            deep_pending=_deep(part.pending),
                            deep_open_batch=_deep(part.open) if part.open is not None else 0,
                        )
                parts[p] = row
            out["ingest"] = parts
        stage_mod = sys.modules.get("streams.provider_stage_instance") or sys.modules.get(
            "streams.worker"
        )
        service = getattr(stage_mod, "provider_stage", None)
        if service is None or service.stage is None:
            out["provider_stage"] = "absent" if service is None else "not started"
        else:
            st = service.stage
            row = {"buffered": sum(len(b) for b in list(st.buffers.values()))}
            if deep:
                row["deep_buffers"] = _deep(dict(st.buffers))
                row["deep_stage"] = _deep(st.stage) if st.stage is not None else 0
            out["provider_stage"] = row
        loader_mod = sys.modules.get("streams.loader_instance")
        if loader_mod is not None and loader_mod.loader_service.child is not None:
            out["loader"] = "in its own process (PW_WAREHOUSE_LOADER=process)"
        elif loader_mod is not None and loader_mod.loader_service.loader is not None:
            batch = loader_mod.loader_service.loader._batch
            row = {"records": batch.records}
            if deep:
                row["deep_batch"] = _deep(batch.ledger)
            out["loader"] = row
        return out

    def _probe(signum: int, frame: object) -> None:
        import json
        import time

        path = os.environ["BENCH_MEMORY_PROBE"]
        deep = os.path.exists(path + ".deep")
        line: dict[str, object] = {"time": time.time()}
        for name, fn in (
            ("glibc", _malloc_info),
            ("pymalloc", _pymalloc),
            ("worker", lambda: _worker(deep)),
        ):
            try:
                line[name] = fn()
            except Exception as exc:  # a probe never stops the worker
                line[name] = f"{type(exc).__name__}: {exc}"
        if os.path.exists(path + ".trim"):  # what glibc gives back, and how long it takes
            import ctypes

            def rss() -> float:
                with open("/proc/self/status") as status:
                    for row in status:
                        if row.startswith("VmRSS:"):
                            return int(row.split()[1]) / 1024
                return 0.0

            before, started = rss(), time.perf_counter()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            line["trim"] = {
                "seconds": round(time.perf_counter() - started, 4),
                "rss_before": before,
                "rss_after": rss(),
            }
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")

    signal.signal(signal.SIGRTMIN + 5, _probe)
