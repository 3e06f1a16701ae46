"""Event-to-screen latency of the live feed: from producing an attack event to seeing its alert.

Starts a real worker in its own namespace on the local broker, connects an SSE client
(`GET /v1/alerts/stream`) and, when Chromium is installed, the live page (`GET /alerts`) before
anything is produced, then produces one attack event at a time (a provider creating credentials
on a fresh account: one critical alert each) and records, per event, the wall-clock time from
just before the produce call to the alert's arrival at a plain Kafka consumer of the topic
(when the alert is readable at all), at the SSE client and on the page (each row carries the
`Date.now()` it was drawn at). Figures (p50, p90, p99, max) go to
bench/results/alert_feed_latency.json; nothing is asserted.

    python -m bench.alert_feed_latency --events 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.local_worker import Namespace, Worker, wait_for
from partnerwatch.sse import events, open_stream
from pipeline.config import REPO_ROOT
from sinks.kafka_io import consumer, ensure_topics, send_events


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "n": len(ordered),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
    }


def attack(account: str, i: int) -> dict[str, Any]:
    return {
        "event_id": f"{account}-{i}",
        "occurred_at": "2026-11-26T10:00:00.000Z",
        "account_id": account,
        "actor": {"type": "provider", "provider_id": "PROV-X", "principal_id": "intruder"},
        "action": "auth.credentials_create",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between attack events")
    parser.add_argument(
        "--commit-interval", type=float, default=0.5, help="PW_COMMIT_INTERVAL of the worker"
    )
    parser.add_argument("--no-page", action="store_true", help="SSE client only")
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/results/alert_feed_latency[-cN].json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ns = Namespace(Path(tmp), extra_env={"PW_COMMIT_INTERVAL": str(args.commit_interval)})
        worker = Worker(ns).start()
        try:
            report = asyncio.run(run(ns, Path(tmp), args.events, args.interval, not args.no_page))
        finally:
            worker.stop()
    report.update(
        {
            "events": args.events,
            "interval_s": args.interval,
            "machine": platform.platform(),
            "python": platform.python_version(),
            "commit_interval_s": ns.settings.commit_interval,
        }
    )
    out = args.out or REPO_ROOT / "bench" / "results" / (
        "alert_feed_latency.json"
        if args.commit_interval == 0.5
        else f"alert_feed_latency-c{args.commit_interval}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


async def run(
    ns: Namespace, tmp: Path, count: int, interval: float, with_page: bool
) -> dict[str, Any]:
    prefix = f"lat{int(time.time())}"
    arrived: dict[str, float] = {}
    response = open_stream(f"http://127.0.0.1:{ns.port}/v1/alerts/stream", timeout=120)

    def read() -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed at the end
            for event in events(response):
                if event.event == "alert":
                    arrived.setdefault(orjson.loads(event.data)["account_id"], time.time())

    threading.Thread(target=read, daemon=True).start()
    settings = ns.settings
    # A plain Kafka consumer beside the feed: when the alert is readable on the topic at all,
    # so the pipeline's share and the feed's share of the latency can be told apart.
    on_topic: dict[str, float] = {}
    tail = consumer(
        settings, settings.alerts_topic, role="bench-alert-tail", auto_offset_reset="latest"
    )
    tail.poll(timeout_ms=1000)  # joined and positioned at the end before anything is produced
    stop_tail = threading.Event()

    def read_topic() -> None:
        while not stop_tail.is_set():
            for records in tail.poll(timeout_ms=200).values():
                for r in records:
                    on_topic.setdefault(orjson.loads(r.value)["account_id"], time.time())
        tail.close()

    threading.Thread(target=read_topic, daemon=True).start()
    ensure_topics(settings)
    page_cm = None
    if with_page:
        from tests.live_feed.cdp import chromium, chromium_binary

        if chromium_binary() is not None:
            page_cm = chromium(tmp / "chromium")
    page = await page_cm.__aenter__() if page_cm is not None else None
    try:
        if page is not None:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{ns.port}/alerts")
            await page.wait(
                'document.getElementById("conn") && document.getElementById("conn").textContent === "live"',
                60,
                "the page's stream",
            )
        produced: dict[str, float] = {}

        def paced() -> Iterator[dict[str, Any]]:
            for i in range(count):
                account = f"{prefix}-{i}"
                produced[account] = (
                    time.time()
                )  # the producer sends it as soon as it is handed over
                yield attack(account, i)
                time.sleep(interval)

        await asyncio.to_thread(lambda: sum(1 for _ in send_events(settings, paced())))
        await asyncio.to_thread(
            wait_for, lambda: len(arrived) >= count, 120, "every alert on the SSE client"
        )
        await asyncio.to_thread(
            wait_for, lambda: len(on_topic) >= count, 60, "every alert on the topic"
        )
        stop_tail.set()
        report: dict[str, Any] = {
            "topic": percentiles(
                [(on_topic[a] - t) * 1000 for a, t in produced.items() if a in on_topic]
            ),
            "sse": percentiles(
                [(arrived[a] - t) * 1000 for a, t in produced.items() if a in arrived]
            ),
            "sse_after_topic": percentiles(
                [
                    (arrived[a] - on_topic[a]) * 1000
                    for a in produced
                    if a in arrived and a in on_topic
                ]
            ),
        }
        if page is not None:
            await page.wait(
                f'document.querySelectorAll("#alerts tr").length >= {count}',
                120,
                "every alert on the page",
            )
            shown = await page.js(
                '[...document.querySelectorAll("#alerts tr")].map((tr) =>'
                ' [tr.querySelector("td.account").textContent, Number(tr.dataset.receivedAt)])'
            )
            on_page = {a: ms / 1000 for a, ms in shown}
            report["page"] = percentiles(
                [(on_page[a] - t) * 1000 for a, t in produced.items() if a in on_page]
            )
        return report
    finally:
        if page_cm is not None:
            await page_cm.__aexit__(None, None, None)
        response.close()


if __name__ == "__main__":
    main()
