"""The quarterly provider review, from a simulated quarter in the real embedded warehouse: the HTML
is self-contained, and its figures (tiles, chart bars, tables) are the counts of the seeded data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from detectors.geo import lookup
from pipeline.config import REPO_ROOT
from pipeline.event import timestamp_ms
from pipeline.forensics.review import collect, price_histogram, quarter_bounds
from pipeline.forensics.review_report import render
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse
from tests.integrity.conftest import detected_alerts, simulated_entries

ACCOUNT, PROVIDER, QUARTER = "A0001SELLER", "prov-001", "2026Q4"


class Figures(HTMLParser):
    """Reads back tiles (data-metric), chart bars (data-label/value per svg id) and table sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, int] = {}
        self.bars: dict[str, dict[str, float]] = {}
        self.stacked: Counter[str] = Counter()
        self.tables: dict[str, int] = {}
        self.tags: Counter[str] = Counter()
        self.urls: list[str] = []
        self._svg = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        self.urls += [v for k, v in a.items() if k in ("src", "href") or "url(" in v]
        if tag == "svg":
            self._svg = a.get("id", "")
        if "data-metric" in a:
            self.metrics[a["data-metric"]] = int(a["data-value"])
        if tag == "rect" and "data-label" in a:
            if "data-series" in a:
                self.stacked[a["data-series"]] += int(float(a["data-value"]))
            else:
                self.bars.setdefault(self._svg, {})[a["data-label"]] = float(a["data-value"])
        if "data-rows" in a:
            self.tables[a["id"]] = int(a["data-rows"])


@pytest.fixture(scope="module")
def quarter(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """About two months of traffic (2026-11-02 onwards, into 2027Q1) with attacks, and its alerts."""
    from pipeline.config import Settings
    from pipeline.simulation.traffic import ATTACKS
    from sinks.clickhouse import migrate

    entries = simulated_entries(
        3000, seed=5, attack_rate=0.02, attack_kinds=ATTACKS, events_per_hour=2.0
    )
    alerts = detected_alerts(entries)
    path = tmp_path_factory.mktemp("review") / "warehouse"
    wh = EmbeddedWarehouse(path)
    try:
        migrate(wh, Settings.from_env({}))
        store_events(wh, entries)
        store_alerts(wh, alerts)
    finally:
        wh.close()
    return path, entries, alerts


def expected(entries: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    start, end = quarter_bounds(QUARTER)
    mine = [
        e
        for e in entries
        if e["account_id"] == ACCOUNT
        and e["actor"].get("provider_id") == PROVIDER
        and start <= timestamp_ms(e["occurred_at"], "t") < end
    ]
    flagged = [
        a
        for a in alerts
        if a["account_id"] == ACCOUNT
        and a["provider_id"] == PROVIDER
        and start <= timestamp_ms(a["first_seen"], "t") < end
    ]
    return {"events": mine, "alerts": flagged}


def test_review_figures_are_the_seeded_counts(
    quarter: tuple[Path, list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    path, entries, alerts = quarter
    want = expected(entries, alerts)
    events, flagged = want["events"], want["alerts"]
    # The seed gives a quarter worth reviewing: activity, alerts and a fund move.
    assert len(events) > 300 and len(flagged) >= 3
    assert any(e["action"].startswith("funds.") for e in events)
    assert any(e["occurred_at"] >= "2027" for e in entries)  # and data past the quarter, left out

    wh = EmbeddedWarehouse(path)
    try:
        review = collect(wh, ACCOUNT, PROVIDER, QUARTER, lambda ip: lookup(ip).country)
    finally:
        wh.close()
    html = render(review, "2027-01-05 09:00 UTC")
    figures = Figures()
    figures.feed(html)

    ips = {e.get("source", {}).get("ip", "") for e in events}
    prices = [e for e in events if e["action"] == "listing.price_change"]
    funds = [e for e in events if e["action"].startswith("funds.")]
    severity = Counter(a["severity"] for a in flagged)
    assert figures.metrics == {
        "events": len(events),
        "principals": len({e["actor"]["principal_id"] for e in events}),
        "ips": len(ips),
        "countries": len({lookup(ip).country or "unknown" for ip in ips}),
        "alerts": len(flagged),
        "alerts_critical": severity["critical"],
        "alerts_high": severity["high"],
        "price_changes": len(prices),
        "fund_moves": len(funds),
        "grant_events": sum(
            1
            for e in entries
            if e["account_id"] == ACCOUNT
            and e["action"] == "permission.grant"
            and e["grant"]["provider_id"] == PROVIDER
            and e["occurred_at"] < "2027-01-01"
        ),
    }
    assert figures.bars["chart-severity"] == {
        s: float(severity[s]) for s in ("critical", "high", "medium", "low", "info")
    }
    assert figures.bars["chart-detectors"] == {
        d: float(n) for d, n in Counter(a["detector"] for a in flagged).items()
    }
    assert figures.bars["chart-actions"] == {
        a: float(n) for a, n in Counter(e["action"] for e in events).items()
    }
    assert figures.stacked == Counter(e["action"].split(".")[0] for e in events)
    assert sum(figures.bars["chart-countries"].values()) == len(events)

    pct = []
    for e in prices:
        change = next(c for c in e["changes"] if c["field"] == "price")
        pct.append((float(change["new"]) - float(change["old"])) / float(change["old"]) * 100)
    assert figures.bars["chart-prices"] == dict(price_histogram(pct))
    assert sum(figures.bars["chart-prices"].values()) == len(prices)

    assert figures.tables["table-alerts"] == len(flagged)
    assert figures.tables["table-funds"] == len(funds)
    assert figures.tables["table-ips"] == min(len(ips), 50)

    # Self-contained: no scripts, no links, no external assets.
    assert figures.urls == [] and figures.tags["script"] == 0 and figures.tags["link"] == 0
    assert html.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


def test_quarter_bounds() -> None:
    assert quarter_bounds("2026Q3") == (
        timestamp_ms("2026-07-01T00:00:00Z", "t"),
        timestamp_ms("2026-10-01T00:00:00Z", "t"),
    )
    assert quarter_bounds("2026q4")[1] == timestamp_ms("2027-01-01T00:00:00Z", "t")
    with pytest.raises(ValueError):
        quarter_bounds("2026Q5")


def test_escapes_what_it_shows(
    quarter: tuple[Path, list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    from pipeline.forensics.review import Review

    review = Review("<script>x</script>", 'p"><img src=x>', "2026Q4")
    html = render(review, "now")
    assert "<script>x" not in html and "<img" not in html


def test_cli_writes_the_report_and_chromium_renders_it(
    quarter: tuple[Path, list[dict[str, Any]], list[dict[str, Any]]], tmp_path: Path
) -> None:
    path, entries, alerts = quarter
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update({"PW_DATA_DIR": str(path.parent), "PW_WEB_PORT": "9"})
    out = tmp_path / "review.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "partnerwatch",
            "report",
            "provider",
            "--account",
            ACCOUNT,
            "--provider",
            PROVIDER,
            "--quarter",
            QUARTER,
            "--out",
            str(out),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    events = len(expected(entries, alerts)["events"])
    assert f"{events} events" in " ".join(done.stdout.split())
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "partnerwatch",
            "report",
            "provider",
            "--account",
            ACCOUNT,
            "--provider",
            PROVIDER,
            "--quarter",
            "Q3",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no headless Chromium on this machine")
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = Figures()
    rendered.feed(dom.stdout)
    assert rendered.metrics["events"] == events
    assert rendered.tags["svg"] == 6
