"""Every named query on the real embedded warehouse, each checked row by row against the same
computation in Python over the ledger entries that were stored."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

import pytest

from pipeline import authorization
from pipeline.authorization import allows_scope, covering, plain_address
from pipeline.config import Settings
from pipeline.contract import WRITE_PREFIXES
from pipeline.event import format_ms
from pipeline.forensics.chain_check import parse_when
from pipeline.forensics.queries import get, load
from pipeline.ledger import event_of
from sinks.clickhouse import SqlLimits, WarehouseError, run_user_sql
from tests.forensics.conftest import ACCOUNT, Seeded

WHOLE = {"from": "2026-10-01", "to": "2027-01-01"}


def run(seeded: Seeded, name: str, **params: str) -> list[dict[str, Any]]:
    """A named query as the CLI runs it: bound parameters, admitted by the guard, under the limits."""
    query = get(name)
    job = seeded.warehouse.user_query(query.bind(params), SqlLimits.from_settings(Settings()))
    return run_user_sql(job, query.sql).as_dicts()


def ch(ts: str) -> str:
    return f"{ts[:10]} {ts[11:23]}"


def ms(text: str) -> int:
    return parse_when(text.replace(" ", "T", 1))


def in_window(entry: dict[str, Any], start: str, end: str) -> bool:
    return ms(start) <= ms(entry["occurred_at"]) < ms(end)


def by_time(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (e["occurred_at"], e["account_id"], e["seq"]))


def test_every_query_runs_and_the_library_matches_its_files(seeded: Seeded) -> None:
    library = load()
    assert set(library) == {
        "provider_timeline",
        "from_ip",
        "sku_history",
        "fund_moves",
        "grant_history",
        "outside_grants",
        "top_writers",
        "alerts_with_evidence",
        "activity_per_minute",
    }
    for query in library.values():
        assert query.description and all(p.description for p in query.params)
        assert query.sql.lstrip().upper().startswith(("SELECT", "WITH"))


def test_provider_timeline_is_the_providers_events_in_seq_order(seeded: Seeded) -> None:
    start, end = "2026-11-02 07:00:00", "2026-11-02 09:30:00"
    rows = run(
        seeded,
        "provider_timeline",
        account=ACCOUNT,
        provider=seeded.provider,
        **{"from": start, "to": end},
    )
    expected = [
        e
        for e in seeded.of(ACCOUNT)
        if e["actor"]["type"] == "provider"
        and e["actor"]["provider_id"] == seeded.provider
        and in_window(e, start, end)
    ]
    assert len(expected) > 50
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in expected]
    assert [(r["seq"], r["principal_id"], r["action"], r["occurred_at"]) for r in rows] == [
        (e["seq"], e["actor"]["principal_id"], e["action"], ch(e["occurred_at"])) for e in expected
    ]
    limited = run(
        seeded,
        "provider_timeline",
        account=ACCOUNT,
        provider=seeded.provider,
        limit="7",
        **{"from": start, "to": end},
    )
    assert [r["event_id"] for r in limited] == [e["event_id"] for e in expected[:7]]


def _from_ip_oracle(entries: list[dict[str, Any]], network: str) -> list[str]:
    net = ipaddress.ip_network(network, strict=False)
    out = []
    for e in by_time(entries):
        address = plain_address(e.get("source", {}).get("ip", ""))
        if address is not None and address.version == net.version and address in net:
            out.append(e["event_id"])
    return out


@pytest.mark.parametrize(
    "kind", ["v6_net", "v4_net_with_mapped", "v4_single", "v6_single", "v4_sim_net"]
)
def test_from_ip_matches_addresses_and_networks_of_both_families(seeded: Seeded, kind: str) -> None:
    sim_ip = next(
        e["source"]["ip"]
        for e in seeded.entries
        if e.get("source", {}).get("ip", "").startswith("91.64.")
    )
    network = {
        "v6_net": "2001:db8::/32",
        "v4_net_with_mapped": "91.64.1.0/24",  # scene-006 comes from ::ffff:91.64.1.9
        "v4_single": sim_ip,
        "v6_single": "2001:db8:77::6",
        "v4_sim_net": "91.64.0.0/16",
    }[kind]
    rows = run(seeded, "from_ip", network=network)
    expected = _from_ip_oracle(seeded.entries, network)
    assert expected, network
    assert [r["event_id"] for r in rows] == expected
    if kind == "v4_net_with_mapped":
        assert "scene-006" in expected and "::ffff:91.64.1.9" in {r["source_ip"] for r in rows}


def test_from_ip_filters_by_account_and_time(seeded: Seeded) -> None:
    start, end = "2026-11-02 08:00:00", "2026-11-02 09:00:00"
    rows = run(
        seeded, "from_ip", network="0.0.0.0/0", account="A0001SELLER", **{"from": start, "to": end}
    )
    expected = _from_ip_oracle(
        [e for e in seeded.of("A0001SELLER") if in_window(e, start, end)], "0.0.0.0/0"
    )
    assert len(expected) > 20
    assert [r["event_id"] for r in rows] == expected


@pytest.mark.parametrize("network", ["not-an-ip", "10.0.0.0/33", "2001:db8::/129", "1.2.3.4/8/9"])
def test_from_ip_refuses_a_bad_network_and_the_next_query_is_clean(
    seeded: Seeded, network: str
) -> None:
    with pytest.raises(WarehouseError, match="network must be an IP address or a CIDR"):
        run(seeded, "from_ip", network=network)
    assert run(seeded, "from_ip", network="2001:db8:77::6")[0]["event_id"] == "scene-007"


def _price(entry: dict[str, Any]) -> tuple[str, str, float | None]:
    for change in entry.get("changes") or []:
        if change["field"] == "price":
            old, new = float(change["old"]), float(change["new"])
            return change["old"], change["new"], (new - old) * 100 / old
    return "", "", None


def test_sku_history_names_who_touched_it_and_its_prices(seeded: Seeded) -> None:
    counts: dict[str, int] = defaultdict(int)
    for e in seeded.entries:
        if e["action"] == "listing.price_change":
            counts[e["resource"]["id"]] += 1
    sku = max(sorted(counts), key=lambda s: counts[s])
    expected = by_time(
        [
            e
            for e in seeded.entries
            if e.get("resource", {}).get("id") == sku
            and e["action"].startswith(("listing.", "inventory."))
        ]
    )
    assert counts[sku] >= 2 and len(expected) > counts[sku]
    rows = run(seeded, "sku_history", sku=sku)
    assert [(r["event_id"], r["principal_id"], r["action"]) for r in rows] == [
        (e["event_id"], e["actor"]["principal_id"], e["action"]) for e in expected
    ]
    for row, entry in zip(rows, expected, strict=True):
        old, new, pct = _price(entry)
        assert (row["price_old"], row["price_new"]) == (old, new)
        assert (row["price_change_pct"] is None) == (pct is None)
        if pct is not None:
            assert row["price_change_pct"] == pytest.approx(pct, abs=0.006)
    scene = run(seeded, "sku_history", sku="SKU-SCENE-1", account=ACCOUNT)
    assert [r["event_id"] for r in scene] == [
        "scene-002",
        "scene-004",
        "scene-005",
        "scene-006",
        "scene-009",
        "scene-010",
        "scene-013",
    ]
    assert (
        scene[-1]["actor_type"],
        scene[-1]["price_old"],
        scene[-1]["price_new"],
        scene[-1]["price_change_pct"],
    ) == (
        "seller",
        "20.00",
        "15.00",
        -25.0,
    )


def test_fund_moves_in_a_period(seeded: Seeded) -> None:
    rows = run(seeded, "fund_moves", **WHOLE)
    expected = by_time([e for e in seeded.entries if e["action"].startswith("funds.")])
    assert len(expected) >= 10
    assert [
        (r["event_id"], r["action"], r["amount_value"], r["amount_currency"]) for r in rows
    ] == [
        (
            e["event_id"],
            e["action"],
            e.get("amount", {}).get("value", ""),
            e.get("amount", {}).get("currency", ""),
        )
        for e in expected
    ]
    start = ch(expected[len(expected) // 2]["occurred_at"])
    mine = run(seeded, "fund_moves", account=ACCOUNT, **{"from": start, "to": WHOLE["to"]})
    assert [r["event_id"] for r in mine] == [
        e["event_id"]
        for e in expected
        if e["account_id"] == ACCOUNT and ch(e["occurred_at"]) >= start
    ]
    payout = next(r for r in mine if r["event_id"] == "scene-011")
    assert (
        payout["actor_type"],
        payout["amount_value"],
        payout["amount_currency"],
        payout["source_ip"],
    ) == (
        "seller",
        "1234.50",
        "EUR",
        "2001:db8:1::1",
    )


def test_grant_history_reads_the_grant_terms_and_which_changes_took_effect(seeded: Seeded) -> None:
    rows = run(seeded, "grant_history", account=ACCOUNT)
    expected = [
        e for e in seeded.of(ACCOUNT) if e["action"] in ("permission.grant", "permission.revoke")
    ]
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in expected]
    for row, entry in zip(rows, expected, strict=True):
        grant = entry["grant"]
        assert row["grant_id"] == grant["grant_id"]
        assert row["grantee"] == grant.get("provider_id", "")
        assert row["scopes"] == grant.get("scopes", [])
        assert row["principals"] == grant.get("principals", [])
        assert row["marketplaces"] == grant.get("marketplaces", [])
        assert row["valid_until"] == grant.get("valid_until", "")
        took_effect = (
            authorization.apply(authorization.empty(), event_of(entry))
            or entry["action"] == "permission.revoke"
        )
        assert bool(row["effective"]) == (took_effect and entry["actor"]["type"] != "provider")
    effective = {r["event_id"]: r["effective"] for r in rows}
    assert (effective["scene-001"], effective["scene-003"], effective["scene-008"]) == (1, 1, 0)


def _outside_oracle(entries: list[dict[str, Any]], start: str, end: str) -> list[tuple[str, str]]:
    """Replay grants as the pipeline does; provider actions no live grant allows (scope and site)."""
    states: dict[str, dict[str, Any]] = {}
    out = []
    for entry in sorted(entries, key=lambda e: (e["account_id"], e["seq"])):
        event = event_of(entry)
        state = states.setdefault(event["account_id"], authorization.empty())
        if event["action"] in authorization.AUTHORIZATION_ACTIONS:
            authorization.apply(state, event)
        if event["actor"]["type"] != "provider" or not in_window(entry, start, end):
            continue
        live = covering(state["grants"], event)
        site = event.get("marketplace")
        allowing = [
            g
            for g in live
            if allows_scope(g, event["action"])
            and (site is None or g.get("marketplaces") is None or site in g["marketplaces"])
        ]
        if not allowing:
            out.append((entry, "no live grant" if not live else "outside scope"))
    out.sort(key=lambda found: (found[0]["occurred_at"], found[0]["account_id"], found[0]["seq"]))
    return [(e["event_id"], reason) for e, reason in out]


def test_outside_grants_replays_grants_revokes_and_expiry_in_sql(seeded: Seeded) -> None:
    rows = run(seeded, "outside_grants", **WHOLE)
    expected = _outside_oracle(seeded.entries, WHOLE["from"], WHOLE["to"])
    assert [(r["event_id"], r["reason"]) for r in rows] == expected
    scene = {r["event_id"]: r["reason"] for r in rows if r["event_id"].startswith("scene-")}
    assert scene == {
        "scene-002": "no live grant",  # after the revoke
        "scene-004": "no live grant",  # principal the narrower grant does not name
        "scene-006": "outside scope",  # site outside the grant
        "scene-007": "outside scope",  # action outside its scopes
        "scene-008": "outside scope",  # a provider granting permissions: no grant allows that
        "scene-009": "no live grant",  # the provider's own re-grant did not count
        "scene-010": "no live grant",  # expired
        "scene-012": "no live grant",  # expired
    }
    # Every event the grant detectors alerted on is among them.
    flagged = {
        event_id
        for a in seeded.alerts
        if a["detector"] in ("provider_without_grant", "listing_out_of_scope")
        for event_id in a["evidence_event_ids"]
    }
    assert flagged and flagged <= {r["event_id"] for r in rows}


def test_outside_grants_for_one_account_and_period(seeded: Seeded) -> None:
    # from the first event to 2 h into the grant scene: its first part, not its later events (scene-01x)
    start, end = (
        ch(seeded.entries[0]["occurred_at"]),
        ch(format_ms(seeded.scene_start + 2 * 3_600_000)),
    )
    rows = run(seeded, "outside_grants", account=ACCOUNT, **{"from": start, "to": end})
    expected = _outside_oracle(seeded.of(ACCOUNT), start, end)
    assert [(r["event_id"], r["reason"]) for r in rows] == expected
    assert ("scene-002", "no live grant") in expected and all(
        not e.startswith("scene-01") for e, _ in expected
    )


def test_top_writers_counts_writes_per_principal(seeded: Seeded) -> None:
    start, end = "2026-11-02 06:00:00", "2026-11-02 12:00:00"
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in seeded.entries:
        if e["action"].startswith(WRITE_PREFIXES) and in_window(e, start, end):
            actor = e["actor"]
            groups[(actor["type"], actor.get("provider_id", ""), actor["principal_id"])].append(e)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0][2]))[:5]
    rows = run(seeded, "top_writers", limit="5", **{"from": start, "to": end})
    assert [
        (
            r["actor_type"],
            r["provider_id"],
            r["principal_id"],
            r["writes"],
            r["failed_or_denied"],
            r["resources"],
            r["accounts"],
            r["source_ips"],
            r["first_write"],
            r["last_write"],
        )
        for r in rows
    ] == [
        (
            *key,
            len(es),
            sum(e["outcome"] != "success" for e in es),
            len({e.get("resource", {}).get("id", "") for e in es}),
            len({e["account_id"] for e in es}),
            len({e["source"]["ip"] for e in es if e.get("source", {}).get("ip")}),
            ch(min(e["occurred_at"] for e in es)),
            ch(max(e["occurred_at"] for e in es)),
        )
        for key, es in ranked
    ]


def test_alerts_with_evidence_joins_every_piece_of_evidence(seeded: Seeded) -> None:
    start, end = "2026-11-02 07:00:00", "2026-11-02 09:00:00"
    by_id = {e["event_id"]: e for e in seeded.entries}
    open_then = [
        a
        for a in seeded.alerts
        if ch(a["first_seen"]) < end + ".000" and ch(a["last_seen"]) >= start + ".000"
    ]
    expected = sorted(
        (a["first_seen"], a["alert_id"], by_id[ev]["seq"], ev, a["detector"], by_id[ev]["action"])
        for a in open_then
        for ev in a["evidence_event_ids"]
    )
    rows = run(seeded, "alerts_with_evidence", **{"from": start, "to": end})
    assert len({a["alert_id"] for a in open_then}) >= 5
    assert [
        (r["alert_id"], r["evidence_event_id"], r["detector"], r["evidence_action"], r["found"])
        for r in rows
    ] == [(alert, ev, detector, action, 1) for _, alert, _, ev, detector, action in expected]
    one = run(
        seeded, "alerts_with_evidence", detector="listing_out_of_scope", account=ACCOUNT, **WHOLE
    )
    assert (
        one
        and {r["detector"] for r in one} == {"listing_out_of_scope"}
        and {r["account_id"] for r in one} == {ACCOUNT}
    )
    assert len(one) == sum(
        len(a["evidence_event_ids"])
        for a in seeded.alerts
        if a["detector"] == "listing_out_of_scope" and a["account_id"] == ACCOUNT
    )


def test_activity_rollup_equals_the_raw_events(seeded: Seeded) -> None:
    groups: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in seeded.entries:
        minute = ch(e["occurred_at"])[:16] + ":00"
        groups[
            (minute, e["account_id"], e["actor"].get("provider_id", ""), e["action"], e["outcome"])
        ].append(e)
    rows = run(seeded, "activity_per_minute", **WHOLE)
    assert [
        (
            r["minute"],
            r["account_id"],
            r["provider_id"],
            r["action"],
            r["outcome"],
            r["events"],
            r["principals"],
            r["source_ips"],
        )
        for r in rows
    ] == [
        (
            *key,
            len(es),
            len({e["actor"]["principal_id"] for e in es}),
            len({e["source"]["ip"] for e in es if e.get("source", {}).get("ip")}),
        )
        for key, es in sorted(groups.items())
    ]
    assert sum(r["events"] for r in rows) == len(
        seeded.entries
    )  # the repeated batches were not counted twice
    raw = seeded.warehouse.query(
        "SELECT toStartOfMinute(occurred_at) AS minute, account_id, provider_id, action, outcome, count() AS events"
        " FROM audit.events GROUP BY ALL ORDER BY ALL"
    ).rows
    assert [
        [r["minute"], r["account_id"], r["provider_id"], r["action"], r["outcome"], r["events"]]
        for r in rows
    ] == raw
    one = run(
        seeded,
        "activity_per_minute",
        account=ACCOUNT,
        provider=seeded.provider,
        **{"from": "2026-11-02 08:00:00", "to": "2026-11-02 08:30:00"},
    )
    assert one and sum(r["events"] for r in one) == sum(
        1
        for e in seeded.of(ACCOUNT)
        if e["actor"].get("provider_id") == seeded.provider
        and "2026-11-02T08:00" <= e["occurred_at"] < "2026-11-02T08:30"
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        (
            "provider_timeline",
            {
                "account": ACCOUNT,
                "provider": "prov-002' UNION SELECT * FROM audit.events --",
                **WHOLE,
            },
        ),
        ("provider_timeline", {"account": "' OR 1=1 --", "provider": "x", **WHOLE}),
        ("sku_history", {"sku": "x'; DROP TABLE audit.events; --"}),
        ("grant_history", {"account": "A0000SELLER' OR '1'='1"}),
        ("fund_moves", {"account": "') OR account_id != ('", **WHOLE}),
        ("top_writers", {"account": "x\\' UNION ALL SELECT 1,2,3 --", **WHOLE}),
    ],
)
def test_parameters_carrying_sql_are_data(
    seeded: Seeded, name: str, params: dict[str, str]
) -> None:
    before = seeded.warehouse.query("SELECT count() FROM audit.events").rows[0][0]
    assert run(seeded, name, **params) == []
    assert (
        seeded.warehouse.query("SELECT count() FROM audit.events").rows[0][0]
        == before
        == len(seeded.entries)
    )


def test_timestamps_in_any_accepted_form_mean_the_same_instant(seeded: Seeded) -> None:
    a = run(
        seeded, "fund_moves", **{"from": "2026-11-02T08:00:00+02:00", "to": "2026-11-02T12:00:00Z"}
    )
    b = run(
        seeded, "fund_moves", **{"from": "2026-11-02 06:00:00", "to": "2026-11-02 12:00:00.000"}
    )
    assert a == b and a
