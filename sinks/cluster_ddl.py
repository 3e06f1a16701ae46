"""Render the single-node migrations for a ClickHouse cluster (`PW_CLICKHOUSE_CLUSTER`).

The migrations in `sinks/migrations/` are written for one server. On a cluster each
MergeTree-family table `db.t` becomes two tables, both created `ON CLUSTER`:

- `db.t_local`: the data, with the Replicated* counterpart of the engine (replicas of a shard stay
  in sync through ClickHouse Keeper, path `/clickhouse/tables/{shard}/{database}/{table}`);
- `db.t`: a `Distributed` table over `db.t_local`, sharded by `cityHash64(account_id)` so an
  account's whole hash chain (and its rollups, alerts, digests) stays on one shard.

Readers and the loader keep using `db.t`. A materialized view reads from and writes into the local
tables, so each shard rolls up its own rows. INSERT ... SELECT statements (backfills) go through
the Distributed tables unchanged. `ALTER TABLE` of a sharded table runs on the local tables, and
its column changes (`ADD|DROP|MODIFY|RENAME COLUMN`) on the Distributed table too. Any other
statement kind is refused, so a new migration the renderer cannot handle fails the test suite
instead of a deployment.

Pure text in, text out: the only value put into the DDL is the cluster name, validated as an
identifier. Engine macros (`{shard}`, `{replica}`, ...) are expanded by each server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHARDING_KEY = "cityHash64(account_id)"
ZK_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA = "{replica}"
LOCAL_SUFFIX = "_local"
# The bookkeeping table lives on every node (one replica set across all shards), so every worker
# sees which migrations ran, whichever node it migrates through.
MIGRATIONS_ZK_PATH = "/clickhouse/tables/all/{database}/{table}"
MIGRATIONS_REPLICA = "{shard}-{replica}"
#: Small bookkeeping tables without an account to shard by, kept whole on every node like the
#: migrations table (one replica set across all shards, no Distributed table): the warehouse
#: loader's per-partition high-water marks.
NODE_WIDE_TABLES = frozenset({"audit.loader_offsets"})

MERGE_TREE_ENGINES = frozenset(
    {
        "MergeTree",
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "SummingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
    }
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CREATE_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<db>\w+)\.(?P<table>\w+)\s*"
    r"(?P<columns>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w+)(?:\s*\((?P<args>[^()]*)\))?"
    r"(?P<rest>.*)",
    re.DOTALL | re.IGNORECASE,
)
_CREATE_MV = re.compile(
    r"CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<db>\w+)\.(?P<view>\w+)\s+"
    r"TO\s+(?P<tdb>\w+)\.(?P<target>\w+)\s+AS\s+(?P<select>.*)",
    re.DOTALL | re.IGNORECASE,
)
_ALTER_TABLE = re.compile(
    r"ALTER\s+TABLE\s+(?P<db>\w+)\.(?P<table>\w+)\s+(?P<body>.*)", re.DOTALL | re.IGNORECASE
)
_COLUMN_CLAUSE = re.compile(r"(ADD|DROP|MODIFY|RENAME)\s+COLUMN\b", re.IGNORECASE)
_FROM_TABLE = re.compile(r"\b(FROM|JOIN)(\s+)(\w+)\.(\w+)\b", re.IGNORECASE)


class ClusterDDLError(ValueError):
    """A migration statement the cluster renderer does not know how to distribute."""


def check_cluster_name(name: str) -> str:
    """The cluster name is the only value written into DDL: it must be a plain identifier."""
    if not _IDENTIFIER.fullmatch(name):
        raise ClusterDDLError(
            f"PW_CLICKHOUSE_CLUSTER must be an identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}"
        )
    return name


def sharded_tables(statements: Iterable[str]) -> set[str]:
    """`db.table` of every MergeTree-family table the statements create (these get sharded)."""
    found = set()
    for statement in statements:
        m = _CREATE_TABLE.match(statement.strip())
        if (
            m
            and m["engine"] in MERGE_TREE_ENGINES
            and f"{m['db']}.{m['table']}" not in NODE_WIDE_TABLES
        ):
            found.add(f"{m['db']}.{m['table']}")
    return found


def bootstrap_statements(cluster: str, database: str = "audit") -> list[str]:
    """The database and the migrations bookkeeping table, created on every node."""
    cluster = check_cluster_name(cluster)
    return [
        f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}",
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ON CLUSTER {cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = ReplicatedReplacingMergeTree('{MIGRATIONS_ZK_PATH}', '{MIGRATIONS_REPLICA}') "
        "ORDER BY version",
    ]


def render(statement: str, cluster: str, sharded: set[str]) -> list[str]:
    """One single-node statement as the statements that do the same on `cluster`.

    `sharded` is `sharded_tables()` over all migrations (a view may read a table created by an
    earlier migration).
    """
    cluster = check_cluster_name(cluster)
    text = statement.strip()
    head = " ".join(text.split()[:3]).upper()
    if head.startswith("CREATE TABLE"):
        return _render_table(text, cluster)
    if head.startswith("CREATE MATERIALIZED VIEW"):
        return [_render_view(text, cluster, sharded)]
    if head.startswith("INSERT INTO"):
        return [text]  # through the Distributed tables: rows reach the shard of their account
    if head.startswith("ALTER TABLE"):
        return _render_alter(text, cluster, sharded)
    raise ClusterDDLError(
        f"no cluster rendering for this statement (extend sinks/cluster_ddl.py): {text[:80]!r}"
    )


def render_all(statements: Iterable[str], cluster: str, sharded: set[str]) -> list[str]:
    """`render` over a migration's statements, in order."""
    return [out for statement in statements for out in render(statement, cluster, sharded)]


def _render_table(text: str, cluster: str) -> list[str]:
    m = _CREATE_TABLE.match(text)
    if not m:
        raise ClusterDDLError(
            f"unrecognised CREATE TABLE (columns, then ENGINE = ...): {text[:80]!r}"
        )
    engine = m["engine"]
    if engine not in MERGE_TREE_ENGINES:
        raise ClusterDDLError(
            f"{m['db']}.{m['table']}: engine {engine} has no Replicated counterpart here"
        )
    if f"{m['db']}.{m['table']}" in NODE_WIDE_TABLES:
        return [_render_node_wide(m, cluster)]
    if not re.search(r"^\s*\(?\s*account_id\s", m["columns"], re.MULTILINE):
        raise ClusterDDLError(f"{m['db']}.{m['table']}: no account_id column to shard by")
    ine = "IF NOT EXISTS " if m["ine"] else ""
    db, table = m["db"], m["table"]
    local = table + LOCAL_SUFFIX
    args = [f"'{ZK_PATH}'", f"'{REPLICA}'"]
    if m["args"] and m["args"].strip():
        args.append(m["args"].strip())
    local_ddl = (
        f"CREATE TABLE {ine}{db}.{local} ON CLUSTER {cluster}\n{m['columns']}\n"
        f"ENGINE = Replicated{engine}({', '.join(args)}){m['rest'].rstrip()}"
    )
    distributed_ddl = (
        f"CREATE TABLE {ine}{db}.{table} ON CLUSTER {cluster} AS {db}.{local}\n"
        f"ENGINE = Distributed({cluster}, {db}, {local}, {SHARDING_KEY})"
    )
    return [local_ddl, distributed_ddl]


def _render_node_wide(m: re.Match[str], cluster: str) -> str:
    """A bookkeeping table on every node, one replica set across all shards (no Distributed table)."""
    args = [f"'{MIGRATIONS_ZK_PATH}'", f"'{MIGRATIONS_REPLICA}'"]
    if m["args"] and m["args"].strip():
        args.append(m["args"].strip())
    ine = "IF NOT EXISTS " if m["ine"] else ""
    return (
        f"CREATE TABLE {ine}{m['db']}.{m['table']} ON CLUSTER {cluster}\n{m['columns']}\n"
        f"ENGINE = Replicated{m['engine']}({', '.join(args)}){m['rest'].rstrip()}"
    )


def _render_alter(text: str, cluster: str, sharded: set[str]) -> list[str]:
    m = _ALTER_TABLE.match(text)
    if not m:
        raise ClusterDDLError(f"unrecognised ALTER TABLE (ALTER TABLE db.table ...): {text[:80]!r}")
    name = f"{m['db']}.{m['table']}"
    if name not in sharded:
        raise ClusterDDLError(f"ALTER TABLE {name}: not a table the migrations create")
    clauses = _top_level_split(m["body"])
    out = [f"ALTER TABLE {name}{LOCAL_SUFFIX} ON CLUSTER {cluster}\n    " + ",\n    ".join(clauses)]
    columns = [c for c in clauses if _COLUMN_CLAUSE.match(c)]
    if columns:  # the Distributed table mirrors the local table's columns, nothing else
        out.append(f"ALTER TABLE {name} ON CLUSTER {cluster}\n    " + ",\n    ".join(columns))
    return out


def _top_level_split(body: str) -> list[str]:
    """`a, b (x, y), c` -> [`a`, `b (x, y)`, `c`]: commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            if ch == quote and body[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def _render_view(text: str, cluster: str, sharded: set[str]) -> str:
    m = _CREATE_MV.match(text)
    if not m:
        raise ClusterDDLError(
            f"unrecognised materialized view (CREATE MATERIALIZED VIEW v TO t AS SELECT): {text[:80]!r}"
        )
    target = f"{m['tdb']}.{m['target']}"
    if target not in sharded:
        raise ClusterDDLError(f"{m['db']}.{m['view']}: target {target} is not a sharded table")

    def local_source(src: re.Match[str]) -> str:
        name = f"{src[3]}.{src[4]}"
        return f"{src[1]}{src[2]}{name}{LOCAL_SUFFIX}" if name in sharded else src[0]

    select = _FROM_TABLE.sub(local_source, m["select"])
    ine = "IF NOT EXISTS " if m["ine"] else ""
    return (
        f"CREATE MATERIALIZED VIEW {ine}{m['db']}.{m['view']} ON CLUSTER {cluster} "
        f"TO {target}{LOCAL_SUFFIX} AS\n{select}"
    )
