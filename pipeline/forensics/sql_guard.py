"""Make a user's SQL (`partnerwatch sql`, POST /v1/sql) safe to run: one statement, read-only.

A regex on the first keyword is not enough: chDB runs every statement of `SELECT 1; DROP TABLE
audit.events`, and table functions (`file()`, `url()`) read local files and make requests. So
the query must be a single statement (a `;` outside quotes and comments is refused, one trailing
`;` is dropped) and is run with `SETTINGS readonly=1`, under which ClickHouse refuses writes,
DDL, table functions and changes of settings. Values still go in as query parameters
(`{name:Type}`), never spliced into the text.
"""

from __future__ import annotations

import re

READ_ONLY_START = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
SUFFIX = "\nSETTINGS readonly=1"
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")


class UnsafeQuery(ValueError):
    """The query is not one read-only statement."""


def read_only(query: str) -> str:
    """The query with the read-only setting appended, or raise `UnsafeQuery`."""
    if not READ_ONLY_START.match(query):
        raise UnsafeQuery("only read-only statements (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
    body = _single_statement(query)
    if re.search(r"\bSETTINGS\b", _code_only(body), re.IGNORECASE):
        raise UnsafeQuery("SETTINGS clauses are not accepted (queries run with readonly=1)")
    return body + SUFFIX


def _single_statement(query: str) -> str:
    text = query.rstrip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if ";" in _code_only(text):
        raise UnsafeQuery("one statement per query")
    return text


def _code_only(sql: str) -> str:
    """`sql` with string literals, quoted identifiers and comments blanked out; raise on any left open."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            if j >= n:
                raise UnsafeQuery("unterminated quote")
            out.append(" ")
            i = j + 1
        elif c == "$" and (tag := _HEREDOC.match(sql, i)):  # $$...$$ / $tag$...$tag$ strings
            j = sql.find(tag.group(0), tag.end())
            if j < 0:
                raise UnsafeQuery("unterminated heredoc")
            out.append(" ")
            i = j + len(tag.group(0))
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise UnsafeQuery("unterminated comment")
            out.append(" ")
            i = j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
