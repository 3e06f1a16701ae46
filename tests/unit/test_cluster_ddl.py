"""PW_CLICKHOUSE_CLUSTER: every migration rendered for a cluster, checked for structure and parsed
by ClickHouse's parser (chDB). There is no cluster here to run it on."""

from __future__ import annotations

import re

import pytest

from pipeline.config import Settings
from sinks.clickhouse import bootstrap_ddl, migration_ddl
from sinks.cluster_ddl import (
    NODE_WIDE_TABLES,
    ClusterDDLError,
    check_cluster_name,
    render,
    sharded_tables,
)
from tests.unit.chdb_syntax import format_queries

CLUSTER = "pw_cluster"
ZK = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def cluster_ddl() -> list[str]:
    settings = Settings.from_env({}, clickhouse_cluster=CLUSTER)
    return bootstrap_ddl(settings) + [
        s for _, _, statements in migration_ddl(settings) for s in statements
    ]


def single_node_tables() -> dict[str, str]:
    """`db.table` -> engine of every table the single-node migrations create."""
    tables = {}
    for _, _, statements in migration_ddl(Settings.from_env({})):
        for s in statements:
            m = re.match(
                r"CREATE TABLE IF NOT EXISTS (\w+\.\w+)\s*\(.*\)\s*ENGINE = (\w+)", s, re.DOTALL
            )
            if m:
                tables[m[1]] = m[2]
    return tables


def test_every_statement_parses_as_clickhouse() -> None:
    statements = cluster_ddl()
    assert len(statements) >= 14
    results = format_queries(statements)
    for statement, result in zip(statements, results, strict=True):
        assert "ok" in result, (statement[:80], result)
        assert result["ok"].split()[0] == statement.split()[0]
    # The check can fail: a broken statement is reported, not passed.
    broken = format_queries([statements[2].replace("ENGINE = ", "ENGINE = (")])
    assert "error" in broken[0]


def test_every_create_is_on_cluster_and_every_engine_replicated_or_distributed() -> None:
    creates = [s for s in cluster_ddl() if s.startswith("CREATE")]
    assert creates
    for s in creates:
        assert re.search(rf"\bON CLUSTER {CLUSTER}\b", s), s[:80]
        engine = re.search(r"ENGINE = (\w+)\((.*?)\)\s*(?:\n|$|ORDER)", s, re.DOTALL)
        if s.startswith("CREATE TABLE"):
            assert engine, s[:80]
            assert engine[1].startswith("Replicated") or engine[1] == "Distributed", engine[1]
        node_wide = "schema_migrations" in s or any(
            f" {name} ON CLUSTER" in s for name in NODE_WIDE_TABLES
        )
        if engine and engine[1].startswith("Replicated") and not node_wide:
            assert engine[2].startswith(ZK), engine[2]
        elif engine and node_wide:  # bookkeeping: one replica set across all shards
            assert engine[2].startswith(
                "'/clickhouse/tables/all/{database}/{table}', '{shard}-{replica}'"
            ), engine[2]
    # Non-MergeTree engines would be a mistake here: nothing is left un-replicated.
    assert not [s for s in creates if re.search(r"ENGINE = (Replacing|Aggregating)?MergeTree\b", s)]


def test_each_table_is_a_replicated_local_table_plus_a_distributed_table() -> None:
    ddl = "\n;\n".join(cluster_ddl())
    tables = single_node_tables()
    assert {
        "audit.events",
        "audit.alerts",
        "audit.activity_1m",
        "audit.chain_digests",
        "audit.alert_status",
    } <= set(tables)
    assert set(tables) >= NODE_WIDE_TABLES
    for name, engine in tables.items():
        if (
            name in NODE_WIDE_TABLES
        ):  # no account to shard by: whole on every node, no Distributed table
            assert (
                f"CREATE TABLE IF NOT EXISTS {name}_local" not in ddl
                and f"AS {name}_local" not in ddl
            )
            assert re.search(
                rf"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER}\n\(.*?\)\nENGINE = Replicated{engine}\(",
                ddl,
                re.DOTALL,
            )
            continue
        db, table = name.split(".")
        local = re.search(
            rf"CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER {CLUSTER}\n\(.*?\)\nENGINE = (\w+)\(([^\n]*)\)",
            ddl,
            re.DOTALL,
        )
        assert local, name
        assert local[1] == "Replicated" + engine
        assert local[2].startswith(ZK)
        assert (
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {CLUSTER} AS {name}_local\n"
            f"ENGINE = Distributed({CLUSTER}, {db}, {table}_local, cityHash64(account_id))"
        ) in ddl
    # Engine arguments survive: alerts keep the version column of ReplacingMergeTree(count).
    assert f"ReplicatedReplacingMergeTree({ZK}, count)" in ddl


def test_materialized_view_reads_and_writes_local_tables() -> None:
    views = [s for s in cluster_ddl() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == 1
    view = views[0]
    assert f"audit.activity_1m_mv ON CLUSTER {CLUSTER} TO audit.activity_1m_local AS" in view
    assert re.search(r"FROM audit\.events_local\b", view)
    assert not re.search(r"FROM audit\.events\b(?!_)", view)


def test_backfill_goes_through_the_distributed_tables() -> None:
    inserts = [s for s in cluster_ddl() if s.startswith("INSERT")]
    assert len(inserts) == 1
    assert inserts[0].startswith("INSERT INTO audit.activity_1m\n")
    assert re.search(r"FROM audit\.events\n", inserts[0])


def test_bootstrap_on_cluster() -> None:
    db, migrations = bootstrap_ddl(Settings.from_env({}, clickhouse_cluster=CLUSTER))
    assert db == f"CREATE DATABASE IF NOT EXISTS audit ON CLUSTER {CLUSTER}"
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}', '{shard}-{replica}')"
        in migrations
    )


def test_no_cluster_changes_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.clickhouse_cluster == ""
    text = "\n".join(s for _, _, statements in migration_ddl(settings) for s in statements)
    assert (
        "ON CLUSTER" not in text
        and "Replicated" not in text
        and "Distributed" not in text
        and "_local" not in text
    )
    assert bootstrap_ddl(settings)[0] == "CREATE DATABASE IF NOT EXISTS audit"


@pytest.mark.parametrize("name", ["", "pw cluster", "pw;DROP", "1pw", "pw`", "a'b", "pw-east"])
def test_cluster_name_must_be_an_identifier(name: str) -> None:
    with pytest.raises(ClusterDDLError):
        check_cluster_name(name)
    if name:
        with pytest.raises(ValueError, match="PW_CLICKHOUSE_CLUSTER"):
            Settings.from_env({"PW_CLICKHOUSE_CLUSTER": name})


def test_unknown_statements_are_refused_not_passed_through() -> None:
    sharded = {"audit.events"}
    for statement in (
        "ALTER TABLE audit.nowhere ADD COLUMN x String",
        "DROP TABLE audit.events",
        "RENAME TABLE audit.events TO audit.old_events",
        "CREATE TABLE audit.t (account_id String) ENGINE = Memory",
        "CREATE TABLE audit.t (id String) ENGINE = MergeTree ORDER BY id",
        "CREATE MATERIALIZED VIEW audit.v TO audit.other AS SELECT 1 FROM audit.events",
    ):
        with pytest.raises(ClusterDDLError):
            render(statement, CLUSTER, sharded)
    assert sharded_tables(["CREATE TABLE audit.t (account_id String) ENGINE = Memory"]) == set()


def test_alter_runs_on_the_local_tables_and_mirrors_columns_on_the_distributed_table() -> None:
    alters = [s for s in cluster_ddl() if s.startswith("ALTER")]
    assert alters == [
        f"ALTER TABLE audit.events_local ON CLUSTER {CLUSTER}\n    ADD COLUMN IF NOT EXISTS entry_seq UInt64,\n"
        "    MODIFY ORDER BY (account_id, occurred_at, event_id, entry_seq)",
        f"ALTER TABLE audit.events ON CLUSTER {CLUSTER}\n    ADD COLUMN IF NOT EXISTS entry_seq UInt64",
        # a TTL is the local tables' alone (the Distributed tables store nothing)
        f"ALTER TABLE audit.events_local ON CLUSTER {CLUSTER}\n"
        "    MODIFY TTL toDateTime(ingested_at) + INTERVAL 730 DAY",
        f"ALTER TABLE audit.alerts_local ON CLUSTER {CLUSTER}\n"
        "    MODIFY TTL toDateTime(stored_at) + INTERVAL 730 DAY",
        # so are a MergeTree's settings
        f"ALTER TABLE audit.events_local ON CLUSTER {CLUSTER}\n"
        "    MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1,\n"
        "    vertical_merge_algorithm_min_columns_to_activate = 1",
        f"ALTER TABLE audit.events_local ON CLUSTER {CLUSTER}\n"
        "    MODIFY SETTING min_bytes_for_wide_part = 33554432",
    ]
    # A clause list with commas inside parentheses and quotes splits only at the top level.
    rendered = render(
        "ALTER TABLE audit.events ADD COLUMN a String DEFAULT concat('x,', 'y'), MODIFY TTL toDateTime(occurred_at) + 1",
        CLUSTER,
        {"audit.events"},
    )
    assert rendered == [
        f"ALTER TABLE audit.events_local ON CLUSTER {CLUSTER}\n    ADD COLUMN a String DEFAULT concat('x,', 'y'),\n"
        "    MODIFY TTL toDateTime(occurred_at) + 1",
        f"ALTER TABLE audit.events ON CLUSTER {CLUSTER}\n    ADD COLUMN a String DEFAULT concat('x,', 'y')",
    ]
