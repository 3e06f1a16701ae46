"""The rate of notification ingestion: SQS (ElasticMQ) to events acknowledged by Kafka.

ElasticMQ is started by the project's own runner (`partnerwatch elasticmq start`, on a port of
its own on 127.0.0.1) and stopped after. `--count` notifications are sent to a fresh standard
queue first: the project's own notification fixtures (tests/notifications/fixtures/, the
envelope shapes Amazon sends: listing status and MFN quantity changes, offer and pricing
changes, transactions, account status, feed and report processing), each copy with a
NotificationId of its own so that none is dropped as a repeat. Then the real reader,
`python -m partnerwatch notifications run` (10 messages per receive as shipped, long polling with
a 2 s wait instead of 20 so that it stops quickly at the end), reads the queue into a Kafka
namespace of its own on the local broker.

The clock starts when the reader takes its first message off the queue (its own start-up is not
counted) and stops when a consumer of the namespace's actions topic has seen every expected
event; a notification's events are acknowledged by Kafka before its message is deleted, so
events/s is the rate at which notifications become durable. The time until the queue is empty
(every message deleted) and the reader process's CPU seconds over the run are reported too.
Nothing is asserted; the load average at the start is in the results.

Figures go to bench/results/<date>-notifications.json and .md (`--results` for another folder).

    python -m bench.notifications [--count 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.gateway_report import write
from bench.procstats import cpu_seconds
from partnerwatch.common import elasticmq_runner
from partnerwatch.local_worker import Namespace, free_port
from pipeline.config import REPO_ROOT, checkout
from sinks.kafka_io import consumer, ensure_topics
from sources.notifications import parse
from sources.notifications.events import Target, to_events
from tests.notifications.harness import ACCOUNT, new_queue, own_fixtures, queue_depth, sqs_client

RESULTS = REPO_ROOT / "bench" / "results"


def templates() -> list[tuple[str, dict[str, Any]]]:
    """The project's own notifications that carry an Amazon envelope with NotificationMetadata
    (the hostile cases and the EventBridge / SNS wrappings are for the parser's tests)."""
    out = []
    for name, notification in own_fixtures():
        if name.startswith("hostile") or not isinstance(notification, dict):
            continue
        if any(parse.fold(k) == "notificationmetadata" for k in notification):
            out.append((name, notification))
    return out


def with_id(notification: dict[str, Any], notification_id: str) -> dict[str, Any]:
    copy = orjson.loads(orjson.dumps(notification))
    meta_key = next(k for k in copy if parse.fold(k) == "notificationmetadata")
    meta = copy[meta_key]
    id_key = next((k for k in meta if parse.fold(k) == "notificationid"), "NotificationId")
    meta[id_key] = notification_id
    return dict(copy)


def bodies(count: int) -> tuple[list[str], int, dict[str, int]]:
    """`count` message bodies, the number of events they make, and how many of each template."""
    cases = templates()
    run = uuid.uuid4().hex[:8]
    target = Target(ACCOUNT, "DE")
    out: list[str] = []
    events, mix = 0, dict[str, int]()
    for i in range(count):
        name, template = cases[i % len(cases)]
        body = orjson.dumps(with_id(template, f"bench-{run}-{i:07d}")).decode()
        events += len(to_events(parse.from_bytes(body), target))
        mix[name] = mix.get(name, 0) + 1
        out.append(body)
    return out, events, mix


def fill(sqs: Any, url: str, messages: list[str]) -> float:
    started = time.monotonic()
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": m} for i, m in enumerate(chunk)]
        )
        if answer.get("Failed"):
            raise SystemExit(f"ElasticMQ refused messages: {answer['Failed'][:3]}")
    return time.monotonic() - started


def run(count: int = 3000, timeout: float = 300.0) -> dict[str, Any]:
    load = os.getloadavg()
    endpoint = f"http://127.0.0.1:{free_port()}"
    if elasticmq_runner("start", endpoint, quiet=True) != 0:
        raise SystemExit("ElasticMQ did not start (partnerwatch elasticmq start)")
    reader: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="pw-bench-notifications-") as tmp:
            root = Path(tmp)
            ns = Namespace(root)
            settings = ns.settings
            ensure_topics(settings)
            sqs = sqs_client(endpoint)
            url = new_queue(sqs, visibility=60)
            messages, expected, mix = bodies(count)
            send_seconds = fill(sqs, url, messages)
            tail = consumer(
                settings,
                settings.actions_topic,
                role="bench-notifications-tail",
                auto_offset_reset="earliest",
            )
            env = {
                **ns.env,
                "PW_SQS_ENDPOINT_URL": endpoint,
                "PW_NOTIFY_ACCOUNT_ID": ACCOUNT,
                "PW_NOTIFY_SQS_QUEUE_URL": url,
                "PW_NOTIFY_DEFAULT_MARKETPLACE": "DE",
                # A receive returns as soon as messages are there whatever the wait; a short one
                # only lets the reader stop quickly at the end (a blocked 20 s receive holds it).
                "PW_NOTIFY_SQS_WAIT_SECONDS": "2",
            }
            log_path = root / "reader.log"
            with log_path.open("ab") as log:
                reader = subprocess.Popen(
                    [sys.executable, "-m", "partnerwatch", "notifications", "run"],
                    env=env,
                    cwd=checkout() or root,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            seen = 0
            started = acked = emptied = None
            cpu0 = cpu1 = checked = 0.0
            deadline = time.monotonic() + timeout
            while (acked is None or emptied is None) and time.monotonic() < deadline:
                if reader.poll() is not None:
                    raise SystemExit(
                        f"the reader exited: {log_path.read_text(errors='replace')[-2000:]}"
                    )
                for records in tail.poll(timeout_ms=20).values():
                    seen += sum(
                        1 for r in records if orjson.loads(r.value).get("account_id") == ACCOUNT
                    )
                now = time.monotonic()
                if started is None:
                    visible, in_flight = queue_depth(sqs, url)
                    if visible + in_flight < count or in_flight > 0 or seen:
                        started, cpu0 = now, cpu_seconds(reader.pid)
                    continue
                if acked is None and seen >= expected:
                    acked, cpu1 = now, cpu_seconds(reader.pid)
                if emptied is None and now - checked >= 0.1:
                    checked = now
                    if queue_depth(sqs, url) == (0, 0):
                        emptied = now
            tail.close()
            if started is None or acked is None:
                raise SystemExit(
                    f"{seen} of {expected} events within {timeout}s: {log_path.read_text(errors='replace')[-2000:]}"
                )
            seconds = acked - started
            cpu = cpu1 - cpu0
    finally:
        if reader is not None and reader.poll() is None:
            reader.terminate()
            try:
                reader.wait(30)
            except subprocess.TimeoutExpired:
                reader.kill()
                reader.wait(10)
        elasticmq_runner("stop", endpoint, quiet=True)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.notifications --count {count}",
        "notifications": count,
        "events_expected": expected,
        "events_seen": seen,
        "mix": mix,
        "send_seconds": round(send_seconds, 3),
        "seconds_to_acknowledged": round(seconds, 3),
        "seconds_to_queue_empty": round(emptied - started, 3) if emptied is not None else None,
        "notifications_per_second": round(count / seconds, 1),
        "events_per_second": round(expected / seconds, 1),
        "reader_cpu_seconds": round(cpu, 2),
        "reader_cores_busy": round(cpu / seconds, 2),
        "notifications_per_second_per_core": round(count / cpu, 1) if cpu else None,
        "reader": "partnerwatch notifications run: long polling (2 s wait), 10 messages per receive, delete after Kafka's acknowledgement",
        "load_average_at_start": [round(x, 2) for x in load],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }


def markdown(f: dict[str, Any]) -> str:
    rows = [
        (
            "notifications (sent to the queue before the reader starts)",
            f"{f['notifications']:,} ({len(f['mix'])} kinds)",
        ),
        (
            "events acknowledged by Kafka / expected",
            f"{f['events_seen']:,} / {f['events_expected']:,}",
        ),
        ("first message received to every event acknowledged", f"{f['seconds_to_acknowledged']} s"),
        (
            "ingestion rate",
            f"{f['events_per_second']:,} events/s ({f['notifications_per_second']:,} notifications/s)",
        ),
        ("first message received to queue empty (all deleted)", f"{f['seconds_to_queue_empty']} s"),
        ("reader CPU (cores busy)", f"{f['reader_cores_busy']}"),
        (
            "notifications/s per core (notifications / reader CPU seconds)",
            f"{f['notifications_per_second_per_core']}",
        ),
        (
            "load average at start (1/5/15 min)",
            " / ".join(str(x) for x in f["load_average_at_start"]),
        ),
    ]
    lines = [
        f"# Notification ingestion benchmark {f['measured_at']}",
        "",
        f"Command: `{f['command']}`",
        "",
        f"Reader: {f['reader']}; ElasticMQ from `partnerwatch elasticmq start`; the local Kafka broker.",
        "",
        "| measure | result |",
        "|---|---|",
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", f"Machine: {f['machine']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.notifications", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--count", type=int, default=3000, help="notifications sent through the queue"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = run(args.count)
    text = markdown(figures)
    write(figures, args.results, "notifications", text)
    print(text)
    return figures


if __name__ == "__main__":
    main()
