"""The gateway's credential store: secrets only as hashes, revocation and suspension at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sources.gateway.credentials import hash_secret, verify_secret
from sources.gateway.store import Store


def test_secrets_are_stored_only_as_hashes(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.sqlite")
    issued = store.issue("prov-1", "prov-1-user")
    store.close()
    raw = (tmp_path / "gw.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("gw.sqlite-*")
    )
    assert issued.client_id.encode() in raw  # the id is not secret
    assert issued.client_secret.encode() not in raw
    assert issued.refresh_token.encode() not in raw
    row = (
        sqlite3.connect(tmp_path / "gw.sqlite")
        .execute("SELECT secret_hash FROM credentials")
        .fetchone()
    )
    assert row[0].startswith("scrypt$16384$8$1$")
    assert verify_secret(issued.client_secret, row[0])


def test_hash_checks_reject_other_secrets_and_garbage() -> None:
    stored = hash_secret("s3cret")
    assert verify_secret("s3cret", stored)
    assert not verify_secret("s3cret ", stored)
    assert not verify_secret("s3cret", "scrypt$1$2$3$!!$!!")
    assert not verify_secret("s3cret", "plain")
    assert hash_secret("s3cret") != stored  # salted


def test_exchange_needs_all_three_and_tokens_die_with_their_credential(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.sqlite")
    a = store.issue("prov-1", "alice")
    b = store.issue("prov-1", "bob")
    assert store.authenticate(a.client_id, a.client_secret, b.refresh_token) is None
    assert store.authenticate(a.client_id, b.client_secret, a.refresh_token) is None
    assert store.authenticate("pw.client.nobody", a.client_secret, a.refresh_token) is None
    alice = store.authenticate(a.client_id, a.client_secret, a.refresh_token)
    assert alice is not None and (alice.provider_id, alice.principal_id) == ("prov-1", "alice")
    token = store.new_token(alice, ttl=600)
    assert store.principal_of(token) == alice
    assert store.principal_of(token + "x") is None
    assert store.revoke(a.client_id)
    assert not store.revoke(a.client_id)
    assert store.principal_of(token) is None
    assert store.authenticate(a.client_id, a.client_secret, a.refresh_token) is None
    assert store.authenticate(b.client_id, b.client_secret, b.refresh_token) is not None


def test_expired_tokens_do_not_work(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.sqlite")
    a = store.issue("prov-1", "alice")
    alice = store.authenticate(a.client_id, a.client_secret, a.refresh_token)
    assert alice is not None
    assert store.principal_of(store.new_token(alice, ttl=-1)) is None


def test_suspension_seen_by_another_connection_at_once(tmp_path: Path) -> None:
    gateway, cli = Store(tmp_path / "gw.sqlite"), Store(tmp_path / "gw.sqlite")
    a = cli.issue("prov-1", "alice")
    other = cli.issue("prov-2", "carol")
    alice = gateway.authenticate(a.client_id, a.client_secret, a.refresh_token)
    carol = gateway.authenticate(other.client_id, other.client_secret, other.refresh_token)
    assert alice is not None and carol is not None
    token, carols = gateway.new_token(alice, 600), gateway.new_token(carol, 600)
    assert cli.suspend("prov-1", "owner", "caught") == 1
    assert gateway.principal_of(token) is None
    assert gateway.principal_of(carols) == carol
    assert gateway.authenticate(a.client_id, a.client_secret, a.refresh_token) is None
    assert gateway.suspended("prov-1") is not None
    assert cli.resume("prov-1")
    assert gateway.principal_of(token) is None  # dropped tokens stay dropped
    assert gateway.authenticate(a.client_id, a.client_secret, a.refresh_token) == alice
