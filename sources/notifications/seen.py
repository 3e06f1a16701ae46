"""Notifications already stored: their identities, kept in SQLite for `PW_NOTIFY_SEEN_DAYS`.

SQS delivers at least once and Amazon may send a notification again; a repeat is dropped here
before it reaches Kafka. An identity is marked only after Kafka acknowledged the events, so a
crash between the two leaves it unmarked: the repeat is sent again, under the same event id,
and the ledger stores it once (its dedup window). The store is only an optimisation over that.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class Seen:
    def __init__(self, path: Path | str, days: float = 14.0) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (identity TEXT PRIMARY KEY, at REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self.keep_seconds = days * 86400.0
        self._last_prune = 0.0

    def has(self, identity: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM seen WHERE identity = ?", (identity,)).fetchone()
        return row is not None

    def mark(self, identities: list[str]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO seen (identity, at) VALUES (?, ?)",
                [(i, now) for i in identities],
            )
            if now - self._last_prune > 3600:
                self._db.execute("DELETE FROM seen WHERE at < ?", (now - self.keep_seconds,))
                self._last_prune = now

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
