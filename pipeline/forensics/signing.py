"""Signing keys for chain digests and evidence manifests: Ed25519 (preferred) or HMAC-SHA256.

Ed25519 lets an auditor verify with the public key alone, without being able to forge; HMAC
needs the same secret to verify, so it suits a team verifying its own records. Key material is
never logged or printed: a key is named by its `key_id`, a short fingerprint (of the public key;
for HMAC, an HMAC of a fixed label under the key, so it reveals nothing to guess from).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"


class SigningKeyError(ValueError):
    """A key could not be loaded or does not fit; the message says which and why."""


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_key_id(public: Ed25519PublicKey) -> str:
    return "ed25519:" + hashlib.sha256(_raw_public(public)).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """A key that signs: `sign(message)` -> hex signature."""

    algorithm: str
    key_id: str
    _private: Ed25519PrivateKey | None = None
    _secret: bytes = b""

    def __repr__(self) -> str:  # never the key
        return f"Signer({self.algorithm}, {self.key_id})"

    def sign(self, message: bytes) -> str:
        if self._private is not None:
            return self._private.sign(message).hex()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def verifier(self) -> Verifier:
        if self._private is not None:
            return Verifier(ED25519, self.key_id, _public=self._private.public_key())
        return Verifier(HMAC_SHA256, self.key_id, _secret=self._secret)

    def public_pem(self) -> bytes | None:
        """The public key (PEM) an auditor verifies with; None for HMAC."""
        return self.verifier().public_pem()


@dataclass(frozen=True)
class Verifier:
    """A key that checks signatures."""

    algorithm: str
    key_id: str
    _public: Ed25519PublicKey | None = None
    _secret: bytes = b""

    def __repr__(self) -> str:
        return f"Verifier({self.algorithm}, {self.key_id})"

    def verify(self, message: bytes, signature: str, algorithm: str, key_id: str) -> str | None:
        """None when `signature` is this key's signature of `message`, else what is wrong."""
        if algorithm != self.algorithm or key_id != self.key_id:
            return f"signed with {algorithm} key {key_id}, not the given key {self.key_id}"
        try:
            raw = bytes.fromhex(signature)
        except ValueError:
            return "signature is not hex"
        if self._public is not None:
            try:
                self._public.verify(raw, message)
            except InvalidSignature:
                return "bad signature"
            return None
        expected = hmac.new(self._secret, message, hashlib.sha256).digest()
        return None if hmac.compare_digest(expected, raw) else "bad signature"

    def public_pem(self) -> bytes | None:
        if self._public is None:
            return None
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def hmac_signer(secret: str) -> Signer:
    key = secret.encode()
    if len(key) < 16:
        raise SigningKeyError("the HMAC digest key must be at least 16 bytes")
    key_id = "hmac:" + hmac.new(key, b"partnerwatch key id", hashlib.sha256).hexdigest()[:16]
    return Signer(HMAC_SHA256, key_id, _secret=key)


def load_private(path: Path) -> Signer:
    """An Ed25519 private key from a PEM file (PKCS#8, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load the private key {path}: {type(exc).__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return Signer(ED25519, ed25519_key_id(key.public_key()), _private=key)


def load_public(pem: bytes, source: str = "public key") -> Verifier:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load the {source}: {type(exc).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the {source} is not an Ed25519 public key")
    return Verifier(ED25519, ed25519_key_id(key), _public=key)


def keygen(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 keypair (the private key with mode 0600, never overwritten); return key_id."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(private_path, 0o600)  # whatever the umask
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ed25519_key_id(public)


def configured_signer(key_file: str, hmac_key: str) -> Signer | None:
    """The signer from settings: the Ed25519 key file if set, else the HMAC key, else None."""
    if key_file:
        return load_private(Path(key_file))
    if hmac_key:
        return hmac_signer(hmac_key)
    return None
