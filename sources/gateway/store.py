"""The gateway's own state, in one SQLite file: principals' credentials, tokens, suspensions.

Why SQLite: it is in the standard library, one file in the data folder, safe for the CLI and the
running gateway to use at once (WAL mode; every request reads its token row, so a revocation or
a suspension the CLI writes is seen by the very next call, with no signal to send).

Secrets and tokens are kept only as hashes (why these hashes: credentials.py).
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sources.gateway.credentials import (
    Issued,
    Principal,
    dummy_hash,
    hash_secret,
    token_hash,
    verify_secret,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    client_id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    refresh_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS credentials_provider ON credentials (provider_id);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS tokens_provider ON tokens (provider_id);
CREATE TABLE IF NOT EXISTS suspensions (
    provider_id TEXT PRIMARY KEY,
    suspended_at TEXT NOT NULL,
    suspended_by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS provider_changes (
    provider_id TEXT PRIMARY KEY,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    report_type TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS prices (
    sku TEXT NOT NULL,
    marketplace TEXT NOT NULL,
    price TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (sku, marketplace)
);
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS authorization_state (
    account_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Store:
    """The gateway's SQLite store; one instance per process (the CLI or the gateway)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        with contextlib.suppress(OSError):
            path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # -- credentials ---------------------------------------------------------------------------

    def issue(self, provider_id: str, principal_id: str) -> Issued:
        issued = Issued(
            client_id=f"pw.client.{secrets.token_hex(12)}",
            client_secret=f"pw.secret.{secrets.token_urlsafe(32)}",
            refresh_token=f"Atzr|pw.{secrets.token_urlsafe(48)}",
            provider_id=provider_id,
            principal_id=principal_id,
        )
        self.db.execute(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                issued.client_id,
                provider_id,
                principal_id,
                hash_secret(issued.client_secret),
                hash_secret(issued.refresh_token),
                now_iso(),
            ),
        )
        return issued

    def credentials(self, provider_id: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT c.client_id, c.provider_id, c.principal_id, c.created_at, c.revoked_at,"
            " s.suspended_at FROM credentials c LEFT JOIN suspensions s USING (provider_id)"
        )
        args: tuple[Any, ...] = ()
        if provider_id is not None:
            query += " WHERE c.provider_id = ?"
            args = (provider_id,)
        cols = (
            "client_id",
            "provider_id",
            "principal_id",
            "created_at",
            "revoked_at",
            "suspended_at",
        )
        rows = self.db.execute(query + " ORDER BY c.created_at, c.client_id", args).fetchall()
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def revoke(self, client_id: str) -> bool:
        """Revoke a credential and every token it was exchanged for; False if unknown or revoked."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "UPDATE credentials SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
                (now_iso(), client_id),
            )
            self.db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
                (now_iso(), client_id),
            )
        return cur.rowcount == 1

    def authenticate(
        self, client_id: str, client_secret: str, refresh_token: str
    ) -> Principal | None:
        """The principal whose credential these are (live, provider not suspended), else None."""
        principal, problem = self.check_credentials(client_id, client_secret, refresh_token)
        return principal if problem is None else None

    def check_credentials(
        self, client_id: str, client_secret: str, refresh_token: str | None
    ) -> tuple[Principal | None, str | None]:
        """(principal, None) when the credentials are good; else (principal or None, why not).

        The principal is named when the client id is known, so a failed or refused exchange can
        be recorded against it. `refresh_token=None`: a client-credentials (grantless) exchange.
        """
        row = self.db.execute(
            "SELECT provider_id, principal_id, secret_hash, refresh_hash, revoked_at FROM credentials"
            " WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        if row is None:
            verify_secret(client_secret, dummy_hash())  # the same work for unknown ids
            return None, "unknown client_id"
        provider_id, principal_id, secret_hash, refresh_hash, revoked_at = row
        principal = Principal(client_id, provider_id, principal_id)
        ok = verify_secret(client_secret, secret_hash)
        if ok and refresh_token is not None:
            ok = verify_secret(refresh_token, refresh_hash)
        if not ok:
            return principal, "wrong client secret or refresh token"
        if revoked_at is not None:
            return principal, f"credential revoked at {revoked_at}"
        if self.suspended(provider_id) is not None:
            return principal, f"provider {provider_id} is suspended"
        return principal, None

    def credential_problem(self, client_id: str) -> str | None:
        """Why a principal's credential no longer works (revoked, provider suspended), or None."""
        row = self.db.execute(
            "SELECT c.revoked_at, s.suspended_at, c.provider_id FROM credentials c"
            " LEFT JOIN suspensions s USING (provider_id) WHERE c.client_id = ?",
            (client_id,),
        ).fetchone()
        if row is None:
            return "unknown client_id"
        if row[1] is not None:
            return f"provider {row[2]} is suspended (since {row[1]})"
        if row[0] is not None:
            return f"the credential was revoked at {row[0]}"
        return None

    # -- access tokens ---------------------------------------------------------------------------

    def new_token(self, principal: Principal, ttl: float) -> str:
        token = f"Atza|pw.{secrets.token_urlsafe(32)}"
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 86400,))
            self.db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                (
                    token_hash(token),
                    principal.client_id,
                    principal.provider_id,
                    principal.principal_id,
                    now + ttl,
                ),
            )
        return token

    def principal_of(self, token: str) -> Principal | None:
        """The holder of a live access token (not expired, credential live, provider not suspended)."""
        found = self.token_holder(token)
        return found[0] if found is not None and found[1] is None else None

    def token_holder(self, token: str) -> tuple[Principal, str | None] | None:
        """Who a token was issued to, and why it no longer works (None: it works); None if unknown."""
        row = self.db.execute(
            "SELECT t.client_id, t.provider_id, t.principal_id, t.expires_at, t.revoked_at,"
            " c.revoked_at, s.suspended_at FROM tokens t JOIN credentials c USING (client_id)"
            " LEFT JOIN suspensions s ON s.provider_id = t.provider_id WHERE t.token_hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            return None
        client_id, provider_id, principal_id, expires_at, revoked, credential_revoked, suspended = (
            row
        )
        principal = Principal(client_id, provider_id, principal_id)
        if suspended is not None:
            return principal, f"provider {provider_id} is suspended (since {suspended})"
        if revoked is not None:
            return principal, f"the token was revoked at {revoked}"
        if credential_revoked is not None:
            return principal, f"the credential was revoked at {credential_revoked}"
        if expires_at <= time.time():
            return principal, "the token has expired"
        return principal, None

    # -- the kill switch -----------------------------------------------------------------------

    def suspend(self, provider_id: str, by: str, reason: str, at: str | None = None) -> int:
        """Suspend a provider: every token of it is revoked, and it gets no new one until resumed.

        Returns the number of live access tokens revoked. `at`: when (a ledger event's time);
        a change older than the provider's last one is ignored (-1), so a late ledger event
        cannot undo a newer decision made here."""
        at = at or now_iso()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if not self._newer(provider_id, at):
                return -1
            self.db.execute(
                "INSERT OR REPLACE INTO suspensions VALUES (?, ?, ?, ?)",
                (provider_id, at, by, reason),
            )
            cur = self.db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE provider_id = ? AND revoked_at IS NULL"
                " AND expires_at > ?",
                (at, provider_id, time.time()),
            )
        return cur.rowcount

    def resume(self, provider_id: str, at: str | None = None) -> bool:
        """Lift a suspension (revoked tokens stay revoked); False if it was not suspended."""
        at = at or now_iso()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if not self._newer(provider_id, at):
                return False
            cur = self.db.execute("DELETE FROM suspensions WHERE provider_id = ?", (provider_id,))
        return cur.rowcount == 1

    def _newer(self, provider_id: str, at: str) -> bool:
        row = self.db.execute(
            "SELECT changed_at FROM provider_changes WHERE provider_id = ?", (provider_id,)
        ).fetchone()
        if row is not None and row[0] >= at:
            return False
        self.db.execute("INSERT OR REPLACE INTO provider_changes VALUES (?, ?)", (provider_id, at))
        return True

    def suspended(self, provider_id: str) -> dict[str, str] | None:
        row = self.db.execute(
            "SELECT suspended_at, suspended_by, reason FROM suspensions WHERE provider_id = ?",
            (provider_id,),
        ).fetchone()
        return (
            dict(zip(("suspended_at", "suspended_by", "reason"), row, strict=True)) if row else None
        )

    # -- what the gateway remembers of Amazon's answers -------------------------------------------

    def remember_report(self, ident: str, report_type: str) -> None:
        """A report id or report document id, and the report type it belongs to."""
        self.db.execute(
            "INSERT OR REPLACE INTO reports VALUES (?, ?, ?)", (ident, report_type, time.time())
        )

    def report_type(self, ident: str) -> str | None:
        row = self.db.execute("SELECT report_type FROM reports WHERE id = ?", (ident,)).fetchone()
        return row[0] if row else None

    def remember_price(self, sku: str, marketplace: str, price: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO prices VALUES (?, ?, ?, ?)",
            (sku, marketplace, price, time.time()),
        )

    def price(self, sku: str, marketplace: str) -> str | None:
        row = self.db.execute(
            "SELECT price FROM prices WHERE sku = ? AND marketplace = ?", (sku, marketplace)
        ).fetchone()
        return row[0] if row else None

    # -- events the broker did not take yet --------------------------------------------------------

    def queue(self, event_id: str, account_id: str, payload: bytes) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?)",
            (event_id, account_id, payload, time.time()),
        )

    def queued(self, limit: int = 500) -> list[tuple[str, str, bytes]]:
        rows = self.db.execute(
            "SELECT event_id, account_id, payload FROM outbox ORDER BY queued_at LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    def dequeue(self, event_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM outbox WHERE event_id = ?", [(i,) for i in event_ids])

    # -- the authorization state folded from the ledger ------------------------------------------

    def load_authorization(self) -> tuple[dict[str, str], dict[tuple[str, int], int]]:
        states = dict(
            self.db.execute("SELECT account_id, state FROM authorization_state").fetchall()
        )
        positions = {
            (t, p): o
            for t, p, o in self.db.execute(
                "SELECT topic, partition, next_offset FROM ledger_positions"
            )
        }
        return states, positions

    def save_authorization(
        self, states: dict[str, str], positions: dict[tuple[str, int], int]
    ) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO authorization_state VALUES (?, ?)", states.items()
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO ledger_positions VALUES (?, ?, ?)",
                [(t, p, o) for (t, p), o in positions.items()],
            )
