"""Hiding a password in a URL, for logs and errors."""

from __future__ import annotations

import re


def redact_url(url: str) -> str:
    """`clickhouse://user:secret@host/db` -> `clickhouse://user:***@host/db` (for logs and errors)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", url)
