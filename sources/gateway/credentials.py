"""Gateway credentials: who holds them (`Principal`), what is handed out once (`Issued`), and
how their secrets are kept (hashes only; store.py holds them).

Why these hashes: a principal's client secret and refresh token are long-lived, so they are
stored as scrypt hashes (`hashlib.scrypt`, standard library, memory-hard; RFC 7914 parameters
N=2^14, r=8, p=1, a random 16-byte salt each): a stolen store does not give them away, and
checking one costs ~50 ms, paid once per token exchange. Access tokens live minutes and are
looked up on every call, so they are stored as SHA-256: they are 256 random bits, which no
dictionary or brute force reaches, and a slow hash would only slow every request. Nothing here
is stored in the clear; the only way to learn a secret is the output of `credentials issue`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64) of a long-lived secret."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def dummy_hash() -> str:
    return hash_secret("not a secret: unknown client ids cost the same work")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """What `issue` hands out, once: the only time the secrets exist in the clear."""

    client_id: str
    client_secret: str
    refresh_token: str
    provider_id: str
    principal_id: str


@dataclass(frozen=True)
class Principal:
    """Who holds a valid gateway access token."""

    client_id: str
    provider_id: str
    principal_id: str
