"""The poller's memory, in SQLite: the last snapshot of each listing and payment method, the payouts
and transactions already reported, and each account's cursors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson


class Snapshots:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS snapshot (account TEXT, kind TEXT, key TEXT, doc TEXT, PRIMARY KEY (account, kind, key));
            CREATE TABLE IF NOT EXISTS cursor (account TEXT, name TEXT, value TEXT, PRIMARY KEY (account, name));
            """
        )
        self._lock = threading.Lock()

    def get(self, account: str, kind: str, key: str) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM snapshot WHERE account=? AND kind=? AND key=?",
                (account, kind, key),
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def keys(self, account: str, kind: str) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT key FROM snapshot WHERE account=? AND kind=?", (account, kind)
                )
            ]

    def save(
        self, account: str, items: list[tuple[str, str, Any]], cursors: dict[str, str]
    ) -> None:
        """Snapshots (kind, key, doc; None deletes) and cursors, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for kind, key, doc in items:
                    if doc is None:
                        self._db.execute(
                            "DELETE FROM snapshot WHERE account=? AND kind=? AND key=?",
                            (account, kind, key),
                        )
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?, ?)",
                            (account, kind, key, orjson.dumps(doc).decode()),
                        )
                for name, value in cursors.items():
                    self._db.execute(
                        "INSERT OR REPLACE INTO cursor VALUES (?, ?, ?)", (account, name, value)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def cursor(self, account: str, name: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM cursor WHERE account=? AND name=?", (account, name)
            ).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
