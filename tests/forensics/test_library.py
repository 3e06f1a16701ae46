"""The query library's files: header parsing, parameter binding, and docs/forensics.md listing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT
from pipeline.forensics.queries import QUERIES, QueryLibraryError, get, load, parse

GOOD = """-- description: Events of one account
-- since a time.
-- @param account String -- the account
-- @param from DateTime64(3, 'UTC') = 1970-01-01 00:00:00.000 -- start
-- @param limit UInt32 = 10 -- rows
SELECT event_id FROM audit.events
WHERE account_id = {account:String} AND occurred_at >= {from:DateTime64(3, 'UTC')}
LIMIT {limit:UInt32}
"""


def test_header_gives_description_and_typed_parameters() -> None:
    q = parse("demo", GOOD)
    assert q.description == "Events of one account since a time."
    assert [(p.name, p.type, p.required, p.default, p.description) for p in q.params] == [
        ("account", "String", True, None, "the account"),
        ("from", "DateTime64(3, 'UTC')", False, "1970-01-01 00:00:00.000", "start"),
        ("limit", "UInt32", False, "10", "rows"),
    ]
    assert q.sql.startswith("SELECT event_id")


def test_bind_normalizes_values_and_fills_defaults() -> None:
    q = parse("demo", GOOD)
    assert q.bind({"account": "A1", "from": "2026-11-02T08:00:00+02:00"}) == {
        "account": "A1",
        "from": "2026-11-02 06:00:00.000",
        "limit": "10",
    }
    assert (
        q.bind({"account": "x' OR 1=1 --", "limit": "5"})["account"] == "x' OR 1=1 --"
    )  # data, as given


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "needs parameter account"),
        ({"account": "A", "bogus": "1"}, "has no parameter bogus"),
        ({"account": "A", "limit": "ten"}, "takes an integer"),
        ({"account": "A", "limit": "-1"}, "takes an integer"),
        ({"account": "A", "from": "yesterday"}, "takes a date or a time"),
    ],
)
def test_bind_refuses_missing_extra_and_malformed_values(
    given: dict[str, str], message: str
) -> None:
    with pytest.raises(QueryLibraryError, match=message):
        parse("demo", GOOD).bind(given)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("-- description: Events of one account\n", ""), "no `-- description:`"),
        (GOOD.replace("-- @param limit UInt32 = 10 -- rows\n", ""), "header declares"),
        (GOOD.replace("{limit:UInt32}", "{limit:UInt64}"), "declared UInt32 but used as UInt64"),
        (GOOD + "; SELECT 1", "one statement"),
        (GOOD.replace(" -- the account", ""), "needs a type and `-- description`"),
    ],
)
def test_malformed_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(QueryLibraryError, match=message):
        parse("demo", text)


def test_unknown_query_names_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "one_query.sql").write_text(GOOD)
    assert list(load(tmp_path)) == ["one_query"]
    with pytest.raises(QueryLibraryError, match="no query named 'two'; known: one_query"):
        get("two", tmp_path)


def test_every_query_file_is_named_in_the_forensics_page() -> None:
    page = (REPO_ROOT / "docs" / "forensics.md").read_text()
    section = page.split("\n## Query library\n", 1)
    assert len(section) == 2, "docs/forensics.md has no 'Query library' section"
    body = section[1].split("\n## ", 1)[0]
    names = sorted(
        p.name.removesuffix(".sql") for p in QUERIES.iterdir() if p.name.endswith(".sql")
    )
    assert names and names == sorted(load())
    missing = [n for n in names if f"`{n}`" not in body]
    assert not missing, (
        f"query files not named in docs/forensics.md's query library section: {missing}"
    )
