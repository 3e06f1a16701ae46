"""Admit a user's SQL (POST /v1/sql, `partnerwatch sql`, `query`) only if ClickHouse's own parser
shows it is one SELECT that reads the `audit` database and nothing else.

No hand-written lexer: ClickHouse has comment and quoting forms (`#`, `--`, `/* */`, heredocs,
backslash escapes) that a lexer of ours would have to mirror exactly, and one it did not know
(`#`) let `SELECT 1 # '` + newline + `; DROP TABLE ...; SELECT '` through. The engine decides,
through an injected `SqlParser` (this module imports no sink; `sinks.clickhouse` provides one),
and the user's text is only ever passed to it as a query parameter, never as a statement:

1. `formatQuerySingleLine(text)`: the engine refuses more than one statement; its canonical
   one-line re-print must re-print to itself, and it, not the user's text, is what runs;
2. `parseQueryToJSON(canonical)`: the abstract syntax tree as JSON (ClickHouse 26.8+, the
   engine chDB 4.4 ships); nothing is read or run;
3. every node of that tree is checked here against the rules below.

What is admitted:
- exactly one `SELECT` (with `WITH`, `UNION`, subqueries, joins): no other statement,
  no `PARALLEL WITH`, no `INTO OUTFILE`, no `FORMAT`, no `SETTINGS` at any level;
- tables of the `audit` database only: `audit.<table>` or a bare name (user SQL runs with
  `audit` as its current database, so a bare name is an audit table or a `WITH` name); no
  identifier that starts with another database's name (`system.one.dummy`, `x IN system.tables`);
  `IN <name>` names an audit table; table and column names cannot be query parameters;
- no table functions at all (`file`, `url`, `s3`, `remote`, `merge`, `numbers`, `input`,
  `executable`, `mysql`, `postgresql`, `hdfs`, `azureBlobStorage`, `jdbc`, `odbc`, `view`,
  `viewExplain`...: every function in a FROM or JOIN position is refused);
- no function of `DENIED_FUNCTIONS` / `DENIED_PREFIXES`: those that read files, reach the
  network or other processes, read other databases' tables by name, or reveal the server.

This is the first line. Behind it, user SQL runs read-only (`readonly=1` for its whole
connection, so a statement that slipped through could still not write), as the read-only
ClickHouse user on a server, and under the limits of `Settings.sql_*`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

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
    "addresstoline": "introspection of the server's binary",
    "addresstolinewithinlines": "introspection of the server's binary",
    "addresstosymbol": "introspection of the server's binary",
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
    {
        "in",
        "notin",
        "globalin",
        "globalnotin",
        "nullin",
        "notnullin",
        "globalnullin",
        "globalnotnullin",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Keys of a SELECT node that are clauses after the query proper.
_OUTPUT_CLAUSES = {
    "out_file": "INTO OUTFILE is refused",
    "compression": "INTO OUTFILE is refused",
    "format_ast": "FORMAT clauses are refused (the answer's format is fixed)",
    "settings_ast": "SETTINGS clauses are refused (user SQL runs under fixed limits)",
    "settings": "SETTINGS clauses are refused (user SQL runs under fixed limits)",
}


class UnsafeQuery(ValueError):
    """The query is not one SELECT over the audit database; the message says why."""


class SqlParser(Protocol):
    """The engine's parser, as the caller's warehouse provides it (injected: no sink import here).

    Both take the query text as a value (a query parameter), never as a statement, and raise
    ValueError with the engine's message when it refuses the text.
    """

    def format_query(self, sql: str) -> str:
        """`formatQuerySingleLine(sql)`."""
        ...

    def parse_json(self, sql: str) -> str:
        """`parseQueryToJSON(sql)`: the syntax tree as JSON."""
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
    try:
        again = parser.format_query(text)
        tree = json.loads(parser.parse_json(text))
    except ValueError as exc:
        raise UnsafeQuery(f"the engine cannot check this query: {exc}") from None
    if again != text or not text or "\n" in text:
        raise UnsafeQuery("the query does not re-print to itself (refused as ambiguous)")
    check_tree(tree)
    return text


def check_tree(tree: Any) -> None:
    """Raise `UnsafeQuery` unless `tree` (parseQueryToJSON) is one SELECT over the audit database."""
    if not isinstance(tree, dict) or tree.get("type") != "SelectWithUnionQuery":
        kind = tree.get("type") if isinstance(tree, dict) else type(tree).__name__
        raise UnsafeQuery(f"only one SELECT (WITH allowed) is accepted, not {kind}")
    _check(tree, None)


def _check(node: Any, parent: dict[str, Any] | None) -> None:
    if isinstance(node, list):
        for item in node:
            _check(item, parent)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "SelectWithUnionQuery":
        if node.get("is_into_outfile_with_stdout"):
            raise UnsafeQuery("INTO OUTFILE is refused")
        for clause, why in _OUTPUT_CLAUSES.items():
            if clause in node:
                raise UnsafeQuery(why)
    elif kind == "SetQuery" or (kind == "SelectQuery" and "settings" in node):
        raise UnsafeQuery("SETTINGS clauses are refused (user SQL runs under fixed limits)")
    elif kind == "QueryParameter" and str(node.get("param_type", "")).strip() == "Identifier":
        raise UnsafeQuery("names cannot be query parameters ({name:Identifier}): only values")
    elif kind == "Function":
        _check_function(node, parent)
    elif kind == "TableIdentifier":
        parts = _parts(node)
        if len(parts) > 2 or not all(parts) or (len(parts) == 2 and parts[0] != ALLOWED_DATABASE):
            raise UnsafeQuery(
                f"only the {ALLOWED_DATABASE} database may be read, not {'.'.join(parts)}"
            )
    elif kind == "Identifier":
        parts = _parts(node)
        if len(parts) > 1 and parts[0].lower() in _OTHER_DATABASES_LOWER:
            raise UnsafeQuery(f"only the {ALLOWED_DATABASE} database may be read, not {parts[0]}")
    for value in node.values():
        if isinstance(value, (dict, list)):
            _check(value, node)


def _check_function(node: dict[str, Any], parent: dict[str, Any] | None) -> None:
    name = str(node.get("name", ""))
    if parent is not None and parent.get("type") == "TableExpression":
        raise UnsafeQuery(f"table functions are refused ({name}): read audit tables by name")
    if not _NAME.fullmatch(name):
        raise UnsafeQuery(f"unusual function name {name!r}")
    why = denied_function(name)
    if why:
        raise UnsafeQuery(f"function {name} is refused: {why}")
    if name.lower() in _IN_FUNCTIONS:  # `x IN name` reads the table `name`
        arguments = node.get("arguments")
        children = arguments.get("children") if isinstance(arguments, dict) else None
        right = children[1] if isinstance(children, list) and len(children) == 2 else None
        if isinstance(right, dict) and right.get("type") == "Identifier":
            parts = _parts(right)
            if len(parts) > 2 or (len(parts) == 2 and parts[0] != ALLOWED_DATABASE):
                raise UnsafeQuery(f"IN may name an audit table only, not {'.'.join(parts)}")


_OTHER_DATABASES_LOWER = frozenset(d.lower() for d in OTHER_DATABASES)


def _parts(node: dict[str, Any]) -> list[str]:
    """The dotted parts of a (table) identifier; a parameter in place of a name is refused."""
    if node.get("children"):
        raise UnsafeQuery("names cannot be query parameters ({name:Identifier}): only values")
    parts = node.get("name_parts") or [node.get("name", "")]
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise UnsafeQuery("unexpected parser output (a name)")
    return parts
