"""Small inline SVG charts for self-contained HTML reports (no scripts, no external assets).

Each bar carries `data-label` and `data-value`, so a test (or a reader's tooling) can read the
figures back from the markup; every text is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
SEVERITY_COLOURS = {
    "info": "#9e9e9e",
    "low": "#4e79a7",
    "medium": "#edc948",
    "high": "#f28e2b",
    "critical": "#e15759",
}


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    colours: dict[str, str] | None = None,
    width: int = 560,
    unit: str = "",
) -> str:
    """Horizontal bars, one per (label, value), longest first as given."""
    row, left, right = 22, 170, 60
    height = 34 + row * max(len(items), 1)
    top = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg id="{_a(chart_id)}" class="chart" role="img" aria-label="{_a(title)}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not items:
        parts.append('<text x="0" y="44" class="empty">none</text>')
    for i, (label, value) in enumerate(items):
        y = 28 + i * row
        length = (width - left - right) * value / top
        colour = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        shown = f"{value:g}{unit}"
        parts.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="label">{escape(_short(label))}</text>'
            f'<rect class="bar" data-label="{_a(label)}" data-value="{value:g}" x="{left}" y="{y + 2}"'
            f' width="{length:.1f}" height="{row - 6}" fill="{colour}"><title>{escape(label)}: {shown}</title></rect>'
            f'<text x="{left + length + 4:.1f}" y="{y + 14}" class="value">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_columns(
    chart_id: str,
    title: str,
    columns: Sequence[str],
    series: Mapping[str, Sequence[float]],
    width: int = 760,
    height: int = 280,
) -> str:
    """Vertical stacked columns: one column per x label, one colour per series, with a legend."""
    left, bottom, top_pad, legend_w = 40, 40, 28, 150
    plot_w, plot_h = width - left - legend_w, height - bottom - top_pad
    totals = [sum(values[i] for values in series.values()) for i in range(len(columns))]
    peak = max(totals, default=0) or 1
    step = plot_w / max(len(columns), 1)
    parts = [
        f'<svg id="{_a(chart_id)}" class="chart" role="img" aria-label="{_a(title)}" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end" class="value">{peak:g}</text>',
    ]
    for i, column in enumerate(columns):
        x = left + i * step + step * 0.15
        y = float(top_pad + plot_h)
        for s, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect class="bar" data-series="{_a(name)}" data-label="{_a(column)}" data-value="{value:g}"'
                f' x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                f"<title>{escape(column)} {escape(name)}: {value:g}</title></rect>"
            )
        if len(columns) <= 16 or i % max(len(columns) // 8, 1) == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{top_pad + plot_h + 14}" text-anchor="middle" class="tick">'
                f"{escape(column[5:] if len(column) == 10 else column)}</text>"
            )
    for s, name in enumerate(series):
        y = top_pad + s * 18
        parts.append(
            f'<rect x="{width - legend_w + 10}" y="{y}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
            f'<text x="{width - legend_w + 28}" y="{y + 10}" class="label">{escape(name)}</text>'
        )
    if not columns:
        parts.append(f'<text x="{left}" y="{top_pad + 20}" class="empty">no activity</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, size: int = 26) -> str:
    return label if len(label) <= size else label[: size - 1] + "\u2026"
