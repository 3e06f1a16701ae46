"""infra/clickhouse/access.sql: valid ClickHouse (chDB's parser), and it grants reading only."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pipeline.config import REPO_ROOT
from tests.unit.chdb_syntax import format_queries, split_statements

ACCESS_SQL = REPO_ROOT / "infra" / "clickhouse" / "access.sql"
GRAFANA_XML = REPO_ROOT / "infra" / "clickhouse" / "users.d" / "grafana_ro.xml"
ROLE = "partnerwatch_analyst"


def normalised() -> list[str]:
    statements = split_statements(ACCESS_SQL.read_text())
    results = format_queries(statements)
    for statement, result in zip(statements, results, strict=True):
        assert "ok" in result, (statement, result)
    return [" ".join(r["ok"].split()) for r in results]


def test_every_statement_parses() -> None:
    statements = normalised()
    kinds = {" ".join(s.split()[:2]) for s in statements}
    assert {
        "CREATE SETTINGS",
        "CREATE ROLE",
        "GRANT SELECT",
        "CREATE USER",
        "CREATE QUOTA",
    } <= kinds


def test_grants_are_select_only() -> None:
    grants = [s for s in normalised() if s.startswith(("GRANT", "REVOKE"))]
    assert grants
    privilege_grants = role_grants = 0
    for g in grants:
        on = re.fullmatch(r"GRANT (.+) ON (\S+) TO (\S+)", g)
        if on:
            assert [p.strip() for p in on[1].split(",")] == ["SELECT"], g
            assert on[2] == "audit.*", g
            assert on[3] == ROLE
            privilege_grants += 1
        else:
            assert re.fullmatch(rf"GRANT {ROLE} TO (grafana_ro|partnerwatch_reader)", g), g
            role_grants += 1
    assert privilege_grants == 1 and role_grants == 2
    text = " ".join(normalised())
    assert not re.search(
        r"\b(INSERT|ALTER|DROP|TRUNCATE|ALL|WITH GRANT OPTION|ADMIN OPTION)\b", text
    )


def test_profile_is_readonly_with_limits_like_the_compose_user() -> None:
    profile = next(s for s in normalised() if s.startswith("CREATE SETTINGS PROFILE"))
    xml = ET.parse(GRAFANA_XML).getroot().find("profiles/grafana_readonly")
    assert xml is not None
    assert "readonly = 1" in profile and xml.findtext("readonly") == "1"
    assert (
        f"max_execution_time = {xml.findtext('max_execution_time')} CHANGEABLE_IN_READONLY"
        in profile
    )
    assert f"max_result_rows = {xml.findtext('max_result_rows')}" in profile
    users = [s for s in normalised() if s.startswith("CREATE USER")]
    assert len(users) == 2
    for user, name in zip(users, ("grafana_ro", "partnerwatch_reader"), strict=True):
        assert name in user and "SETTINGS PROFILE `partnerwatch_readonly`" in user
        assert ET.parse(GRAFANA_XML).getroot().find(f"users/{name}/profile") is not None


def test_user_sql_limits_may_be_lowered_in_readonly_mode_but_not_raised() -> None:
    """PartnerWatch sends its PW_SQL_* limits with every user query as the reader (readonly=1):
    each must be CHANGEABLE_IN_READONLY, with a ceiling, in access.sql and the compose users."""
    profile = next(s for s in normalised() if s.startswith("CREATE SETTINGS PROFILE"))
    xml = ET.parse(GRAFANA_XML).getroot().find("profiles/grafana_readonly/constraints")
    assert xml is not None
    for name in (
        "max_result_rows",
        "max_result_bytes",
        "limit",
        "max_rows_to_read",
        "max_memory_usage",
    ):
        assert re.search(rf"\b{name} = \d+ MAX \d+ CHANGEABLE_IN_READONLY", profile), name
        assert xml.find(f"{name}/changeable_in_readonly") is not None and xml.findtext(
            f"{name}/max"
        ), name
    assert "readonly = 1," in profile


def test_no_real_password_committed() -> None:
    users = [s for s in normalised() if s.startswith("CREATE USER")]
    assert re.search(r"BY 'CHANGE_ME_GRAFANA_PASSWORD'", users[0])
    assert re.search(r"BY 'CHANGE_ME_READER_PASSWORD'", users[1])
