"""The gateway benchmark's results (bench/gateway.py): the Markdown table and the result files.

`write` stores figures as bench/results/<date>-<suffix>.json and its text as .md; the
notifications benchmark (bench/notifications.py) writes its results with it too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def markdown(figures: dict[str, Any]) -> str:
    lat, thr = figures["latency"], figures["throughput"]
    rows = []
    for key in ("all", "getListingsItem", "patchListingsItem"):
        d, g, a = lat["direct"][key], lat["gateway"][key], lat["added_ms"][key]
        rows.append(
            (
                f"added latency, {key} ({lat['calls_each_path']} sequential calls each path)",
                f"p50 {a['p50']} ms, p99 {a['p99']} ms (direct p50 {d['p50']} / p99 {d['p99']} ms;"
                f" through the gateway p50 {g['p50']} / p99 {g['p99']} ms)",
            )
        )
    under = thr["latency_ms_under_load"]
    rows += [
        (
            f"throughput through the gateway, {thr['concurrency']} concurrent clients, {thr['seconds']} s",
            f"{thr['calls_per_second']} calls/s (p50 {under['p50']} ms, p99 {under['p99']} ms)",
        ),
        ("gateway CPU (cores busy)", f"{thr['gateway_cores_busy']}"),
        ("calls/s per core (calls / gateway CPU seconds)", f"{thr['calls_per_second_per_core']}"),
        ("gateway peak RSS", f"{figures['gateway_peak_rss_mib']} MiB"),
        (
            "gateway events on the actions topic / expected",
            f"{figures['events_on_topic']} / {figures['events_expected']}",
        ),
        (
            "load average at start (1/5/15 min)",
            " / ".join(str(x) for x in figures["load_average_at_start"]),
        ),
    ]
    lines = [
        f"# Gateway benchmark {figures['measured_at']}",
        "",
        f"Command: `{figures['command']}`",
        "",
        f"Setup: {figures['setup']}. Calls: {figures['calls']}.",
        "",
        "| measure | result |",
        "|---|---|",
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", f"Machine: {figures['machine']}", ""]
    return "\n".join(lines)


def write(figures: dict[str, Any], results: Path, suffix: str, text: str) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{datetime.now(UTC).strftime('%Y-%m-%d')}-{suffix}"
    stem.with_suffix(".json").write_text(
        orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    stem.with_suffix(".md").write_text(text)
    return stem
