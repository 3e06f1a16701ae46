"""A bounded memo of a pure function's results by its one argument: what `functools.lru_cache`
was on the per-event path, for less.

A hit through `lru_cache` is a call through its wrapper object, the argument's hash and the hit's
link moved to the front of the cache's list: about 500 instructions under callgrind. The ingest
path made about eight an event (the day of its time, twice; its account's sensitivity; its
address, twice; its place, twice; an allowlist's tables), the provider stage about five. From
compiled code, a `Memo` hit is a native method call and one dict lookup.

Full, a memo is emptied (the next calls fill it again) instead of dropping its least recently used
value: the functions memoized are pure, so that changes what a call costs, never what it returns,
and each memo is sized well above the distinct values a worker meets between two fills (source
addresses, days, accounts, allowlists). Safe across threads: a get and a put are each one dict
operation under the GIL; two threads may both compute a value, and either's is kept.

Used as `detectors.geo.lookup` uses it: the memo a `Final` of the module (compiled, a static, not
a lookup in the module's namespace), `get`, on `MISSING` `put` of the body's result, and the
value narrowed by a typed local.
"""

from __future__ import annotations

from typing import Any, Final, final

#: What `Memo.get` gives for a key it does not hold (a function may return None).
MISSING: Final = object()


@final
class Memo:
    """Values by key, at most `limit` of them (see the module's docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a memo holds at least one value, not {limit}")
        self.limit = limit
        self._values: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        """The value held for `key`, else `MISSING`."""
        return self._values.get(key, MISSING)

    def put(self, key: Any, value: Any) -> Any:
        """Hold `value` for `key` (emptied first if full) and return it."""
        values = self._values
        if len(values) >= self.limit:
            values.clear()
        values[key] = value
        return value

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
