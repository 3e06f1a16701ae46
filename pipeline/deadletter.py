"""The dead-letter record for rejected input: why, where from, and the original bytes.

`{reason, detail, topic, partition, offset, raw}` per docs/contract.md, plus `raw_size`,
`raw_sha256`, `raw_encoding` (`utf-8` or `base64` for bytes that are not text) and
`raw_truncated` (raw is cut at `MAX_RAW` bytes so a 2 MB payload cannot clog the topic).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import orjson

MAX_RAW = 64 * 1024


def record(
    reason: str, detail: str, topic: str, partition: int, offset: int, raw: bytes | None
) -> bytes:
    data = raw or b""
    kept = data[:MAX_RAW]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode(), "base64"
    return orjson.dumps(
        {
            "reason": reason,
            "detail": detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "raw": text,
            "raw_encoding": encoding,
            "raw_size": len(data),
            "raw_sha256": hashlib.sha256(data).hexdigest(),
            "raw_truncated": len(data) > MAX_RAW,
            "rejected_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
    )
