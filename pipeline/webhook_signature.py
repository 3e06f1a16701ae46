"""Standard Webhooks signatures (https://www.standardwebhooks.com), both ways.

PartnerWatch signs what it sends (the alert feed's `webhook` and `ocsf` outputs) and checks what
it receives (`POST /v1/events` signed with PW_INGEST_HMAC_SECRET; the gateway's kill switch) with
one scheme, the Standard Webhooks one, so any of that standard's libraries can verify or sign:

    webhook-id: <message id>          the same on every retry of one message
    webhook-timestamp: <Unix seconds> the time of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

`webhook-signature` may list several space-separated `v1,...` signatures (while a key is being
rotated); one valid signature is enough. The key: a secret written as `whsec_<base64>` (the
standard's format; `partnerwatch`'s docs show how to make one) is the base64-decoded bytes; any
other secret is its UTF-8 bytes, which a standard library verifier takes as raw bytes
(`Webhook(secret.encode())`). A receiver refuses a timestamp further than its tolerance from
now; the signature binds the id, the timestamp and the body, so a captured request can be sent
again only within that tolerance, which is why PartnerWatch's HTTP ingest also remembers every
signature it accepted (streams/web/signatures.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105  the standard's prefix of a secret, not a secret
#: The standard's default tolerance, seconds either side of now.
DEFAULT_TOLERANCE = 300
#: A message id: printable ASCII without spaces, at most 256 characters.
_ID = re.compile(r"[\x21-\x7e]{1,256}")
MAX_SIGNATURES = 8


class SignatureError(ValueError):
    """A refused signature; `reason` is a short label (missing, malformed, stale, bad_signature)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verified:
    msg_id: str
    timestamp: int
    signature: str  # the `v1,...` signature that matched, as this side computed it


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: `whsec_<base64>` decoded, else the secret's bytes."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"a {SECRET_PREFIX} secret must be base64 after the prefix") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `<id>.<timestamp>.<body>`."""
    mac = hmac.new(
        secret_key(secret), f"{msg_id}.{int(timestamp)}.".encode() + body, hashlib.sha256
    )
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a signed request."""
    if not _ID.fullmatch(msg_id):
        raise ValueError("a webhook id is 1 to 256 printable ASCII characters without spaces")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
    }


def _header(source: Mapping[str, str], name: str) -> str:
    value = source.get(name)
    if value is None:  # a plain dict with other capitalisation (aiohttp's headers ignore case)
        value = next((v for k, v in source.items() if k.lower() == name), None)
    return value or ""


def verify(
    secret: str | bytes,
    request_headers: Mapping[str, str],
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Verified:
    """Check a signed request; raises SignatureError. Constant-time comparison."""
    msg_id = _header(request_headers, ID_HEADER)
    stamp = _header(request_headers, TIMESTAMP_HEADER)
    signatures = _header(request_headers, SIGNATURE_HEADER)
    if not (msg_id and stamp and signatures):
        raise SignatureError(
            "missing", f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}"
        )
    if not _ID.fullmatch(msg_id):
        raise SignatureError("malformed", f"{ID_HEADER} must be 1 to 256 printable characters")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("malformed", f"{TIMESTAMP_HEADER} must be Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            "stale", f"{TIMESTAMP_HEADER} is outside the {int(tolerance)} s tolerance"
        )
    expected = sign(secret, msg_id, timestamp, body)
    candidates = signatures.split(" ")
    if len(candidates) > MAX_SIGNATURES:
        raise SignatureError("malformed", f"more than {MAX_SIGNATURES} signatures")
    for candidate in candidates:
        if hmac.compare_digest(candidate.encode(errors="replace"), expected.encode()):
            return Verified(msg_id, timestamp, expected)
    raise SignatureError("bad_signature", "wrong signature")
