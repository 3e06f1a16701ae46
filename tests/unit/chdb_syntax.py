"""Syntax check of ClickHouse statements with chDB's own parser (formatQuery), no server needed.

Runs in a child process: chDB allows one engine per process, and other tests in the same pytest
process open their own embedded warehouse.
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r"""
import json, sys
import chdb

def escaped(text):
    # A query parameter's value is read in the escaped text format: a raw newline would end it.
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")

out = []
for statement in json.load(sys.stdin):
    try:
        result = chdb.query("SELECT formatQuery({q:String})", "TSVRaw", params={"q": escaped(statement)})
        out.append({"ok": str(result).strip()})
    except Exception as exc:
        out.append({"error": str(exc)})
json.dump(out, sys.stdout)
"""


def format_queries(statements: list[str]) -> list[dict[str, str]]:
    """Each statement normalised by ClickHouse's parser ({"ok": text}) or its error ({"error": ...})."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(statements),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(proc.stdout))


def split_statements(sql: str) -> list[str]:
    """Statements of a .sql file: `--` comment lines dropped, split on `;`."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
