"""The quarterly provider review rendered as one self-contained HTML page.

The figures come from pipeline/forensics/review.py (`collect`); this module only draws them:
inline SVG charts (pipeline/forensics/charts.py) and tables, loading nothing from anywhere.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from html import escape
from typing import Any

from pipeline.forensics.charts import SEVERITY_COLOURS, bar_chart, stacked_columns
from pipeline.forensics.review import SEVERITIES, Review, price_histogram

# -- rendering ------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;margin:2rem auto;max-width:1000px;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:.25rem .4rem;text-align:left;vertical-align:top}th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}.grid{display:flex;flex-wrap:wrap;gap:1rem}
.metric{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;min-width:110px}.metric b{display:block;font-size:1.4rem}
.sev-critical{color:#b71c1c;font-weight:600}.sev-high{color:#e65100;font-weight:600}.sev-medium{color:#8d6e00}
svg .chart-title{font-weight:600;font-size:13px}svg .label,svg .value,svg .tick{font-size:11px;fill:#333}
svg .axis{stroke:#999}svg .empty{fill:#888;font-style:italic}@media print{body{margin:0}}
"""


def _shown(value: Any) -> str:
    """Timestamps to the second, for reading; everything else as it is."""
    text = "" if value is None else str(value)
    if len(text) == 24 and text[10] == "T" and text.endswith("Z"):
        return f"{text[:10]} {text[11:19]}"
    return text


def _table(
    chart_id: str, header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    if not rows:
        return f'<p id="{chart_id}" class="empty" data-rows="0">None in this quarter.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = _shown(value)
            cls = ' class="num"' if i in numeric else ""
            if header[i] == "severity":
                cls = f' class="sev-{escape(text)}"'
            cells.append(f"<td{cls}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{chart_id}" data-rows="{len(rows)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render(review: Review, generated_at: str) -> str:
    """The review as one HTML document."""
    m = review.metrics()
    labels = {
        "events": "events",
        "principals": "principals",
        "ips": "source IPs",
        "countries": "countries",
        "alerts": "alerts",
        "alerts_critical": "critical",
        "alerts_high": "high",
        "price_changes": "price changes",
        "fund_moves": "fund moves",
        "grant_events": "grant changes",
    }
    tiles = "".join(
        f'<div class="metric" data-metric="{k}" data-value="{m[k]}"><b>{m[k]:,}</b>{escape(v)}</div>'
        for k, v in labels.items()
    )
    severity = Counter(a["severity"] for a in review.alerts)
    detectors = Counter(a["detector"] for a in review.alerts)
    responses = [a["response_hours"] for a in review.alerts if a["response_hours"] is not None]
    response_text = (
        f"Median seller response (next grant change after an alert): {statistics.median(responses):.1f} h over "
        f"{len(responses)} of {len(review.alerts)} alerts."
        if responses
        else "No grant change followed an alert."
    )
    charts = [
        stacked_columns(
            "chart-activity", "Activity by type, per week (Monday)", review.weeks, review.activity
        ),
        bar_chart(
            "chart-severity",
            "Alerts by severity",
            [(s, float(severity[s])) for s in SEVERITIES],
            SEVERITY_COLOURS,
        ),
        bar_chart(
            "chart-detectors",
            "Alerts by detector (violations)",
            [(d, float(n)) for d, n in detectors.most_common()],
        ),
        bar_chart(
            "chart-countries",
            "Events by source country",
            [(c, float(n)) for c, n in review.countries.most_common(12)],
        ),
        bar_chart(
            "chart-prices",
            "Price changes (percent of the old price)",
            price_histogram(review.price_changes),
        ),
        bar_chart(
            "chart-actions",
            "Events by action",
            [(a, float(n)) for a, n in review.actions.most_common()],
        ),
    ]
    alert_rows = [
        [
            a["first_seen"],
            a["severity"],
            a["detector"],
            a["principal_id"],
            a["title"],
            a["count"],
            "" if a["response_hours"] is None else f"{a['response_hours']:.1f} h",
        ]
        for a in review.alerts
    ]
    grant_rows = [
        [
            g["occurred_at"],
            g["action"],
            g["grant_id"],
            ", ".join(g.get("scopes", [])),
            ", ".join(g.get("marketplaces", [])),
            ", ".join(g.get("ip_allowlist", [])),
            g.get("max_price_change_pct", ""),
            g.get("valid_until", ""),
        ]
        for g in review.grants
    ]
    title = f"{review.provider} on {review.account}: {review.quarter} review"
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="sub">Quarterly compliance review of provider <b>{escape(review.provider)}</b> on seller account '
            f"<b>{escape(review.account)}</b>, event time {escape(review.quarter)} (UTC). Generated {escape(generated_at)} by PartnerWatch.</p>",
            f'<div class="grid">{tiles}</div>',
            "<h2>Activity</h2>",
            charts[0],
            charts[5],
            "<h2>Alerts and violations</h2>",
            f'<div class="grid">{charts[1]}{charts[2]}</div>',
            f'<p id="response-times">{escape(response_text)}</p>',
            _table(
                "table-alerts",
                [
                    "first seen",
                    "severity",
                    "detector",
                    "principal",
                    "title",
                    "events",
                    "seller response",
                ],
                alert_rows,
                (5,),
            ),
            "<h2>Where from</h2>",
            charts[3],
            _table(
                "table-ips",
                ["IP", "country", "events", "first", "last", "principals"],
                review.ips[:50],
                (2, 5),
            ),
            _table("table-principals", ["principal", "events"], review.principals, (1,)),
            "<h2>Prices</h2>",
            charts[4],
            _table(
                "table-prices", ["when", "SKU", "site", "principal", "change"], review.prices[-200:]
            ),
            "<h2>Fund moves</h2>",
            _table(
                "table-funds",
                [
                    "when",
                    "event",
                    "action",
                    "principal",
                    "amount",
                    "currency",
                    "outcome",
                    "approval",
                    "IP",
                    "site",
                ],
                review.funds,
            ),
            "<h2>Grants</h2>",
            _table(
                "table-grants",
                [
                    "when",
                    "action",
                    "grant",
                    "scopes",
                    "sites",
                    "IP allowlist",
                    "max price change %",
                    "valid until",
                ],
                grant_rows,
            ),
            "</body></html>",
        ]
    )
