"""The bounded `origin` object of an event: which adapter made it, and what the adapter saw.

`{"adapter": "sp-api-gateway", ...}`: the adapter's name (lower case, 1-64 characters of
`[a-z0-9._-]`, starting with a letter or digit) and, beside it, whatever the adapter keeps of its
input: a gateway's request summary (method, path, HTTP status, submission id), a notification's
type and id. Any JSON goes, up to `MAX_ORIGIN_BYTES` serialized, so one adapter cannot blow up the
ledger. It is kept as sent; adapters put no bank or personal data in it (masking covers `changes`
and `resource`, not `origin`).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.rejection import serialized_size

MAX_ORIGIN_BYTES = 8192
ADAPTER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_origin(value: Any) -> dict[str, Any]:
    """The origin object, or ValueError(reason, detail) with a rejection reason of pipeline/event.py."""
    if not isinstance(value, dict):
        raise ValueError("wrong_type", "origin must be an object")
    adapter = value.get("adapter")
    if adapter is None:
        raise ValueError("missing_field", "origin.adapter is required")
    if not isinstance(adapter, str):
        raise ValueError("wrong_type", "origin.adapter must be a string")
    if not ADAPTER.fullmatch(adapter):
        raise ValueError("bad_value", "origin.adapter must be 1-64 characters of [a-z0-9._-]")
    size = serialized_size(value)
    if size is None:  # nested too deeply to be written inside an event, or a huge integer
        raise ValueError("bad_value", "origin cannot be serialized (nested too deeply?)")
    if size > MAX_ORIGIN_BYTES:
        raise ValueError("bad_value", f"origin is larger than {MAX_ORIGIN_BYTES} bytes")
    return dict(value)
