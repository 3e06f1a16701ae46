"""Issue 15, finding 13: Grafana dashboard variables spliced into ClickHouse SQL.

The provider drill-down interpolated `'${account}'` and `'${provider}'` between quotes, and the
ClickHouse plugin formats a single value as it is: a provider id with a `'` could end the literal
and add SQL. Grafana's own `sqlstring` format (quote, double each `'`) is not enough either,
because ClickHouse string literals also take backslash escapes (`\\'`). The dashboards now use
`decodeURLComponent('${name:percentencode}')`: the percent-encoded value has only `A-Z a-z 0-9 -
_ . ~ %`, so nothing in it can end the literal.

Each ClickHouse query of every dashboard is rendered as Grafana would (tests/observability's
`expand`, with Grafana's documented format rules) with hypothesis-made hostile account and
provider ids, run on the embedded engine with the real schema, and compared with the same query
in which each variable use is replaced by the value as an unambiguous literal (`unhex('...')`).
Equal results (and rows for the hostile account, which the warehouse holds) prove the value was a
literal; an injection errors or changes the result.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.ledger import ChainHead, append, event_of
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, WarehouseError, migrate
from tests.integrity.conftest import detected_alerts, simulated_entries
from tests.observability.test_grafana_dashboards import clickhouse_queries, expand, grafana_format

#: How a variable may appear in a query, and the literal it must be equivalent to: the safe form,
#: and the plugin's default format between quotes (the old form: run, it shows the injection).
SAFE_USE = re.compile(r"decodeURLComponent\('\$\{(\w+):percentencode\}'\)|'\$\{(\w+)\}'")
ANY_USE = re.compile(r"'?\$\{?(?!__)(\w+)(?::\w+)?\}?'?")
PIECES = [
    "'",
    "''",
    "\\",
    "\\'",
    "' OR 1=1 --",
    "') OR ('1'='1",
    "'; DROP TABLE audit.events; --",
    "%27",
    "%",
    "+",
    "#",
    "/*",
    "*/",
    "\n",
    "\t",
    "\x00",
    "é",
    "中",
    "\u202e",
    "${account}",
    "{x:String}",
    "$__timeFilter(x)",
]
hostile = (
    st.lists(
        st.one_of(
            st.sampled_from(PIECES), st.text(st.characters(exclude_categories=("Cs",)), max_size=4)
        ),
        min_size=1,
        max_size=6,
    )
    .map("".join)
    .filter(lambda s: "'" in s or "\\" in s)
)
QUERIES = [q for q in clickhouse_queries() if "${" in q[3]]


def literal(value: str) -> str:
    return f"unhex('{value.encode().hex()}')"


def reference(sql: str, values: dict[str, str]) -> str:
    """`sql` with each variable use replaced by its value as a literal; any other use fails."""
    out = SAFE_USE.sub(lambda m: literal(values[m[1] or m[2]]), sql)
    leftover = [m[0] for m in ANY_USE.finditer(out)]
    assert not leftover, f"a variable used in a form this test does not know: {leftover}"
    return out


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWarehouse]:
    """The real schema, ordinary simulated traffic and its alerts (rows an injection could reach)."""
    wh = EmbeddedWarehouse(tmp_path_factory.mktemp("grafana-vars") / "warehouse")
    try:
        migrate(wh, Settings.from_env({}))
        entries = simulated_entries(400, seed=9, accounts=2)
        store_events(wh, entries)
        store_alerts(wh, detected_alerts(entries))
        yield wh
    finally:
        wh.close()


def store_hostile(wh: EmbeddedWarehouse, account: str, provider: str) -> None:
    """Real simulated provider events (and their alerts) re-addressed to the hostile ids."""
    head, entries = ChainHead(), []
    for source in simulated_entries(300, seed=4, accounts=1):
        event = event_of(source)
        if event["actor"]["type"] == "provider":
            event["actor"] = {**event["actor"], "provider_id": provider}
        event.update(
            account_id=account, event_id=f"{source['event_id']}-{account.encode().hex()[:40]}"
        )
        entry, head = append(head, event, source["ingested_at"])
        entries.append(entry)
    store_events(wh, entries)
    alerts = detected_alerts(entries)
    assert any(a["provider_id"] == provider for a in alerts)
    store_alerts(wh, alerts)


def run(wh: EmbeddedWarehouse, sql: str) -> list[str]:
    """The result's rows, comparable whatever their order."""
    return sorted(repr(row) for row in wh.query(sql).rows)


def window(wh: EmbeddedWarehouse) -> dict[str, str]:
    first, last = wh.query("SELECT min(occurred_at), max(occurred_at) FROM audit.events").rows[0]
    return {"from": first, "to": last}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(account=hostile, provider=hostile)
@example(account="A' OR 1=1 OR account_id = '", provider="\\' OR 1=1 -- ")
def test_every_panel_keeps_hostile_ids_literal(
    warehouse: EmbeddedWarehouse, account: str, provider: str
) -> None:
    account = f"{uuid.uuid4().hex[:8]}{account}"  # a new account each time (hypothesis repeats values); the hostile part ends it
    store_hostile(warehouse, account, provider)
    values = {"account": account, "provider": provider, **window(warehouse)}
    counted = False
    for board, title, _kind, sql in QUERIES:
        try:
            rendered = run(warehouse, expand(sql, values))
        except WarehouseError as exc:
            pytest.fail(
                f"{board} / {title}: the rendered query fails with hostile ids (not a literal): {exc}"
            )
        expected = run(warehouse, expand(reference(sql, values), values))
        assert rendered == expected, f"{board} / {title}: hostile ids changed the result"
        if title == "variable provider":
            assert repr([provider]) in rendered, (
                "the hostile provider is listed for the hostile account"
            )
        if "count() AS events" in sql:
            counted = True
            assert rendered and not rendered[0].startswith("[0,"), (
                f"{title}: no events of the hostile account found"
            )
    assert counted


def test_the_drilldown_queries_are_all_checked() -> None:
    assert len(QUERIES) >= 7 and any(title == "variable provider" for _, title, _, _ in QUERIES)


def test_sqlstring_would_not_keep_a_value_literal_in_clickhouse(
    warehouse: EmbeddedWarehouse,
) -> None:
    """Why not Grafana's `sqlstring`: a backslash escapes the doubled quote in a ClickHouse literal."""
    value = "\\' OR 1=1 -- "
    injected = f"SELECT 'nobody' = {grafana_format(value, 'sqlstring')} AS matched"
    assert warehouse.query(injected).rows == [[1]]  # the comparison became `... OR 1=1`
    safe = f"SELECT 'nobody' = decodeURLComponent('{grafana_format(value, 'percentencode')}') AS matched"
    assert warehouse.query(safe).rows == [[0]]
    assert warehouse.query(
        f"SELECT decodeURLComponent('{grafana_format(value, 'percentencode')}') = {literal(value)}"
    ).rows == [[1]]


def test_percentencode_output_cannot_end_a_literal() -> None:
    for value in ["'", "\\", "\x00\n", "é中\u202e", "%27'\\", "~-_."]:
        encoded = grafana_format(value, "percentencode")
        assert re.fullmatch(r"[A-Za-z0-9\-_.~%]*", encoded), encoded
