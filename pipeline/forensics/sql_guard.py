"""Admit a user's SQL (POST /v1/sql, `partnerwatch sql`, `query`) only if ClickHouse's own parser
shows it is one SELECT that reads the `audit` database and nothing else.

No hand-written lexer: ClickHouse has comment and quoting forms (`#`, `--`, `/* */`, heredocs,
backslash escapes) that a lexer of ours would have to mirror exactly, and one it did not know
(`#`) let `SELECT 1 # '` + newline + `; DROP TABLE ...; SELECT '` through. The engine itself
decides instead, in three steps made through an injected `SqlParser` (this module imports no
sink; `sinks.clickhouse` provides one per backend):

1. `formatQuerySingleLine(<text as a parameter>)`: the engine parses the text as data, never as
   a statement, and refuses more than one statement. Its canonical one-line re-print must parse
   to itself again (so it is exactly one statement), and it, not the user's text, is what runs.
2. `EXPLAIN AST <canonical>` with the query's parameters bound: the parse tree, one row per
   node. Only parsing happens (no table is read, no function runs).
3. Every node is checked here against the rules below.

What is admitted:
- exactly one `SELECT` (with `WITH`, `UNION`, subqueries, joins): no other statement,
  no `PARALLEL WITH`, no `INTO OUTFILE`, no `FORMAT`, no `SETTINGS` at any level;
- tables of the `audit` database only: `audit.<table>` or a bare name (user SQL runs with
  `audit` as its current database, so a bare name is an audit table or a `WITH` name);
  no identifier anywhere that starts with another database's name (`system.one.dummy`,
  `x IN system.tables`), no table functions at all (`file`, `url`, `s3`, `remote`, `merge`,
  `numbers`, `input`, `executable`, `mysql`, `postgresql`, `hdfs`, `azureBlobStorage`, `jdbc`,
  `odbc`, `view`, `viewExplain`, ...: every function in a FROM or JOIN position is refused);
- no function of `DENIED_FUNCTIONS` / `DENIED_PREFIXES`: those that read files, reach the
  network or other processes, read other databases' tables by name, or reveal the server.

This is the first line. Behind it, user SQL runs read-only (`readonly=1` for the whole
connection, so a statement that slipped through could still not write), as the read-only
ClickHouse user on a server, and under the limits of `Settings.sql_*`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: The only database user SQL may read.
ALLOWED_DATABASE = "audit"

#: Databases every engine has besides `audit`; the parser adds the ones it knows (`databases()`).
OTHER_DATABASES = frozenset({"system", "information_schema", "INFORMATION_SCHEMA", "default"})

#: The longest query text accepted (ClickHouse's own max_query_size is 256 KiB).
MAX_QUERY_CHARS = 100_000

# -- the one list of refused functions ------------------------------------------------------------
# Researched on the engine chDB 4.4 ships (ClickHouse 26.9: system.functions, 1885 names), and
# kept for older servers too (catboostEvaluate, modelEvaluate). Names are compared in lower case,
# as written in the query (the parser does not resolve aliases, so aliases are listed as well).
# tests/security/test_sql_surface.py checks this list against the engine's own catalogue.

#: Function families refused by name prefix (lower case).
DENIED_PREFIXES: dict[str, str] = {
    "dict": "dictionaries (dictGet*, dictHas, dictIsIn...): their sources can be files, URLs, other databases or programs",
    "region": "embedded dictionaries (regionToName...): the server's geobase files",
    "ai": "AI functions (aiGenerate, aiEmbed...): requests to an external model provider",
    "filesystem": "filesystemAvailable/Capacity/Unreserved: the server's disks",
    "joinget": "joinGet/joinGetOrNull: Join-engine tables of any database, by name",
    "naivebayes": "naiveBayesClassifier*: models read from the server's files",
    "address": "addressToLine/addressToSymbol: introspection of the server's binary",
    "__": "engine-internal functions",
}

#: Functions refused by exact name (lower case), with why.
DENIED_FUNCTIONS: dict[str, str] = {
    # files, other tables by name, programs
    "file": "reads any file the worker's user can read",
    "hascolumnintable": "reads the schema of any database's tables",
    "catboostevaluate": "loads a model file",
    "modelevaluate": "loads a model file",
    "generateserialid": "writes a counter in ClickHouse Keeper",
    "logtrace": "writes to the server's log",
    "globalvariable": "server state",
    # server configuration (system.server_settings and friends by another door)
    "getserversetting": "server configuration",
    "getmergetreesetting": "server configuration",
    "getsetting": "session settings",
    "getsettingordefault": "session settings",
    "getmacro": "server configuration",
    "getclienthttpheader": "request headers",
    "showcertificate": "the server's TLS certificate",
    # the host and the server process
    "hostname": "the host's name",
    "fqdn": "the host's name",
    "fullhostname": "the host's name",
    "displayname": "the server's name",
    "serveruuid": "the server's identity",
    "getoskernelversion": "the host's kernel",
    "getserverport": "the server's ports",
    "tcpport": "the server's ports",
    "uptime": "the server process",
    "buildid": "the server binary",
    "revision": "the server binary",
    "version": "the server binary",
    "tid": "the server process",
    "demangle": "introspection of the server's binary",
    "zookeepersessionuptime": "the server's Keeper session",
    "sleep": "holds an engine thread without work",
    "sleepeachrow": "holds an engine thread without work",
    # who is asking (the engine's users, profiles and roles)
    "currentuser": "the engine's users",
    "current_user": "the engine's users",
    "user": "the engine's users",
    "session_user": "the engine's users",
    "authenticateduser": "the engine's users",
    "authuser": "the engine's users",
    "currentprofiles": "the engine's profiles",
    "enabledprofiles": "the engine's profiles",
    "defaultprofiles": "the engine's profiles",
    "currentroles": "the engine's roles",
    "enabledroles": "the engine's roles",
    "defaultroles": "the engine's roles",
    "currentrequesturl": "the request",
    "currenthandler": "the request",
    "pggetuserbyid": "the engine's users",
    "pg_get_userbyid": "the engine's users",
}

_IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}
)
_NODE = re.compile(r"( *)([A-Za-z][A-Za-z0-9_]*)(?: (.*))?")
_CHILDREN = re.compile(r" \(children \d+\)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TABLE = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)(?: \(alias .*\))?")


class UnsafeQuery(ValueError):
    """The query is not one SELECT over the audit database; the message says why."""


class SqlParser(Protocol):
    """The engine's parser, as the caller's warehouse provides it (injected: no sink import here)."""

    def format_query(self, sql: str) -> str:
        """`formatQuerySingleLine` of `sql` passed as a parameter; ValueError if the engine refuses it."""
        ...

    def explain_ast(self, sql: str) -> list[str]:
        """`EXPLAIN AST <sql>` with the query's parameters bound, one row per node; ValueError if refused."""
        ...

    def databases(self) -> list[str]:
        """The names of the engine's databases (as far as the connection may see them)."""
        ...


def denied_function(name: str) -> str | None:
    """Why the function `name` is refused, or None when it is allowed."""
    lower = name.lower()
    if lower in DENIED_FUNCTIONS:
        return DENIED_FUNCTIONS[lower]
    return next((why for prefix, why in DENIED_PREFIXES.items() if lower.startswith(prefix)), None)


def admit(query: str, parser: SqlParser) -> str:
    """The canonical text of `query` to run, if it is one SELECT over `audit`; else raise `UnsafeQuery`."""
    if not isinstance(query, str) or not query.strip():
        raise UnsafeQuery("empty query")
    if len(query) > MAX_QUERY_CHARS:
        raise UnsafeQuery(f"query longer than {MAX_QUERY_CHARS} characters")
    try:
        text = parser.format_query(query)
    except ValueError as exc:
        raise UnsafeQuery(f"not one statement ClickHouse can parse: {exc}") from None
    if not text or "\n" in text or "\r" in text:
        raise UnsafeQuery("the engine did not re-print the query as one line")
    try:
        again = parser.format_query(text)
    except ValueError as exc:
        raise UnsafeQuery(f"the query does not parse again after formatting: {exc}") from None
    if again != text:
        raise UnsafeQuery("the query does not re-print to itself (refused as ambiguous)")
    try:
        rows = parser.explain_ast(text)
    except ValueError as exc:
        raise UnsafeQuery(str(exc)) from None
    check_tree(rows, OTHER_DATABASES.union(parser.databases()) - {ALLOWED_DATABASE})
    return text


@dataclass
class _Node:
    kind: str
    text: str  # the rest of the row: a name, `(alias ...)`, a literal...
    parent: int | None
    children: list[int]


def _parse(rows: Iterable[str]) -> list[_Node]:
    nodes: list[_Node] = []
    stack: list[int] = []  # stack[d] = index of the latest node at depth d
    for row in rows:
        # One row per node: a name with a line break in it would otherwise forge rows.
        if any(ord(c) < 32 or ord(c) == 127 for c in row):
            raise UnsafeQuery("control characters in a name or alias")
        match = _NODE.fullmatch(row)
        if match is None:
            raise UnsafeQuery(f"unexpected parser output: {row[:80]!r}")
        depth = len(match.group(1))
        if depth > len(stack) or (depth == 0 and nodes):
            raise UnsafeQuery("unexpected parser output (tree shape)")
        del stack[depth:]
        parent = stack[-1] if stack else None
        text = _CHILDREN.sub("", match.group(3) or "")
        nodes.append(_Node(match.group(2), text, parent, []))
        if parent is not None:
            nodes[parent].children.append(len(nodes) - 1)
        stack.append(len(nodes) - 1)
    if not nodes:
        raise UnsafeQuery("the parser returned nothing")
    return nodes


def check_tree(rows: Iterable[str], other_databases: Iterable[str]) -> None:
    """Raise `UnsafeQuery` unless the `EXPLAIN AST` rows are one SELECT over the audit database."""
    others = frozenset(other_databases)
    nodes = _parse(rows)
    root = nodes[0]
    if root.kind != "SelectWithUnionQuery":
        raise UnsafeQuery(f"only one SELECT (WITH allowed) is accepted, not {root.kind}")
    for extra in root.children[1:]:
        kind = nodes[extra].kind
        if kind == "Literal":
            raise UnsafeQuery("INTO OUTFILE is refused")
        if kind == "Identifier":
            raise UnsafeQuery("FORMAT clauses are refused (the answer's format is fixed)")
        if kind == "Set":
            raise UnsafeQuery("SETTINGS clauses are refused (user SQL runs under fixed limits)")
        raise UnsafeQuery(f"unexpected clause {kind} after the SELECT")
    for node in nodes:
        parent = nodes[node.parent] if node.parent is not None else None
        if node.kind == "Set":
            raise UnsafeQuery("SETTINGS clauses are refused (user SQL runs under fixed limits)")
        if node.kind == "Function":
            name = node.text.split(" ", 1)[0]
            if not _NAME.fullmatch(name):
                raise UnsafeQuery(f"unusual function name {name!r}")
            if parent is not None and parent.kind == "TableExpression":
                raise UnsafeQuery(f"table functions are refused ({name}): read audit tables by name")
            why = denied_function(name)
            if why:
                raise UnsafeQuery(f"function {name} is refused: {why}")
        elif node.kind == "TableIdentifier":
            match = _TABLE.fullmatch(node.text)
            if match is None:
                raise UnsafeQuery(f"unusual table name {node.text[:80]!r}")
            if match.group(1) is not None and match.group(1) != ALLOWED_DATABASE:
                raise UnsafeQuery(f"only the {ALLOWED_DATABASE} database may be read, not {match.group(1)}")
        elif node.kind == "Identifier":
            first = node.text.split(".", 1)[0] if "." in node.text else None
            if first is not None and first in others:
                raise UnsafeQuery(f"only the {ALLOWED_DATABASE} database may be read, not {first}")
            if _is_in_operand(nodes, node):  # `x IN name` reads the table `name`
                match = _TABLE.fullmatch(node.text)
                if match is None or match.group(1) not in (None, ALLOWED_DATABASE):
                    raise UnsafeQuery(f"IN may name an audit table only, not {node.text[:80]!r}")


def _is_in_operand(nodes: list[_Node], node: _Node) -> bool:
    """Is `node` the right-hand side of an IN (where a name may be read as a table)?"""
    if node.parent is None:
        return False
    arguments = nodes[node.parent]
    if arguments.kind != "ExpressionList" or arguments.parent is None or len(arguments.children) != 2:
        return False
    function = nodes[arguments.parent]
    if function.kind != "Function" or function.text.split(" ", 1)[0].lower() not in _IN_FUNCTIONS:
        return False
    return nodes[arguments.children[1]] is node
