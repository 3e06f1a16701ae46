"""Issue 15, finding 12: provider-controlled text reaching a terminal.

`alerts tail` died with rich's MarkupError (exit 1) on a provider id containing `[/bold]`, and
started again from offset 0 to die again; ANSI escapes and newlines in ids reached the terminal
raw; `alerts reopen --by '[/red] x'` wrote its row and then crashed. Here the real commands
(`python -m partnerwatch ...`, no worker: they read Kafka and the embedded warehouse themselves)
run on records whose ids, titles and actors hypothesis makes hostile: rich markup, ANSI CSI/OSC
sequences, CR/LF, backspace, C1 controls, BiDi overrides, zero-width characters, emoji codes,
backslashes. Each command must end as it should (exit 0, or 1 where it reports a problem; never a
traceback), print no control or format character but newlines, and show each value as
`pipeline.text.visible` writes it (JSON output: the exact value).

Covered: alerts tail, ack/resolve/reopen (and a refusal), sql (table, csv, json), query, hunt,
verify-chain (a break on a hostile account), evidence and evidence verify.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from partnerwatch.local_worker import free_port
from pipeline.config import REPO_ROOT, Settings
from pipeline.ledger import ChainHead, append, event_of
from pipeline.text import visible
from sinks.audit_store import store_alerts, store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.integrity.conftest import simulated_entries

pytestmark = pytest.mark.integration

PIECES = [
    "[/bold]",
    "[bold]",
    "[/]",
    "[red]x[/red]",
    "[link=https://evil.example]x[/link]",
    "[@click=quit]x[/]",
    "\x1b[31m",
    "\x1b[2J",
    "\x1b]0;owned\x07",
    "\x1b]8;;https://evil.example\x1b\\",
    "\x1bc",
    "\r",
    "\n",
    "\r\n",
    "\t",
    "\x08",
    "\x07",
    "\x7f",
    "\x9b31m",
    "\x85",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u2028",
    ":bomb:",
    "\\",
    "\\[bold]",
    "[",
    "]",
    "%s",
    "{}",
    " ",
    "é",
    "中",
]
#: argv cannot carry NUL or lone surrogates; everything else may come from a provider
TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
hostile = (
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(TEXT, max_size=5)), min_size=1, max_size=5)
    .map("".join)
    .filter(lambda s: s.strip() and not s.startswith("-") and len(s) <= 100)
)
FINDING = {
    "provider": "prov[/bold]",
    "by": "[/red] x",
    "account": "acct\x1b[31m\r\nfake line\u202e",
}
WHEN = ("--from", "2026-11-02T00:00:00Z", "--to", "2026-11-03T00:00:00Z")


@dataclass
class Env:
    root: Path
    env: dict[str, str]
    settings: Settings


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, kafka_broker: str) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("terminal")
    name = uuid.uuid4().hex[:10]
    values = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PW_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    values.update(
        {
            "PW_TOPIC_PREFIX": f"t{name}.",
            "PW_APP_ID": f"pw-test-{name}",
            "PW_DATA_DIR": str(root / "data"),
            "PW_WEB_PORT": str(free_port()),  # nothing listens: the commands work without a worker
            "PW_KAFKA_BROKER": kafka_broker,
            "COLUMNS": "100000",
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    from sinks.kafka_io import ensure_topics

    settings = Settings.from_env(values)
    ensure_topics(settings)
    yield Env(root, values, settings)


def run(env: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=timeout,
    )


def clean(text: str, where: str) -> None:
    """Nothing a terminal acts on: no control or format character but the newline."""
    assert "Traceback" not in text, f"{where}: {text}"
    for char in text:
        if char != "\n":
            assert unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), (
                f"{where}: raw {char!r} in {text!r}"
            )


def shown(text: str) -> str:
    """The output with rich's line wrapping undone (a long table cell may still fold)."""
    return text.replace("\n", "")


def hostile_alert(marker: str, ids: dict[str, str], n: int) -> dict[str, Any]:
    return {
        "alert_id": f"{ids['alert']}#{n}",
        "detector": marker,
        "severity": "high",
        "account_id": ids["account"],
        "provider_id": ids["provider"],
        "principal_id": ids["principal"],
        "title": ids["title"],
        "summary": ids["title"],
        "evidence_event_ids": [ids["event"]],
        "first_seen": "2026-11-02T06:00:00.000Z",
        "last_seen": "2026-11-02T06:05:00.000Z",
        "count": 1,
        "response": [ids["title"]],
    }


def hostile_entries(
    account: str, provider: str, principal: str, event: str, tamper: bool
) -> list[dict[str, Any]]:
    """Real simulated provider events re-addressed to hostile ids and sequenced (one hash broken if `tamper`)."""
    head = ChainHead()
    out = []
    sources = [
        e for e in simulated_entries(40, seed=3, accounts=1) if e["actor"]["type"] == "provider"
    ][:6]
    for i, source in enumerate(sources):
        ev = event_of(source)
        ev.update(
            account_id=account,
            event_id=f"{event}#{i}",
            actor={**ev["actor"], "provider_id": provider, "principal_id": principal},
        )
        entry, head = append(head, ev, source["ingested_at"])
        out.append(entry)
    if tamper:
        out[2] = {**out[2], "hash": "0" * 64}
    return out


def tail_until(env: Env, sentinel: str, deadline_s: float = 90) -> tuple[int, str, str]:
    """`alerts tail --source kafka` until `sentinel` is printed, then Ctrl-C (SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "partnerwatch", "alerts", "tail", "--source", "kafka"],
        env=env.env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
    )
    out: list[str] = []
    errs: list[str] = []
    seen = threading.Event()

    def read_out() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            out.append(text)
            if sentinel in text:
                seen.set()

    def read_err() -> None:
        assert proc.stderr is not None
        errs.extend(proc.stderr)

    readers = [
        threading.Thread(target=read_out, daemon=True),
        threading.Thread(target=read_err, daemon=True),
    ]
    for reader in readers:
        reader.start()
    end = time.monotonic() + deadline_s
    while not seen.is_set() and proc.poll() is None and time.monotonic() < end:
        seen.wait(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait(30)
    for reader in readers:
        reader.join(10)
    assert seen.is_set(), (
        f"the tail never printed {sentinel!r} (exit {code}): {''.join(out)} {''.join(errs)}"
    )
    return code, "".join(out), "".join(errs)


ids_strategy = st.fixed_dictionaries(
    {
        k: hostile
        for k in ("alert", "account", "provider", "principal", "title", "event", "by", "account2")
    }
).filter(lambda d: d["account"] != d["account2"])


#: each example runs some 20 commands (~30 s): no shrinking, the failing example is printed as found
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
@given(ids=ids_strategy)
@example(
    ids={
        "alert": "a[/bold]\x1b[2J",
        "account": FINDING["account"],
        "provider": FINDING["provider"],
        "principal": "p\u202egnp.exe",
        "title": "Title [/] \x1b]8;;https://evil.example\x1b\\click\r",
        "event": "ev\n[bold]",
        "by": FINDING["by"],
        "account2": "acct2:bomb:\x9b31m",
    }
)
def test_commands_print_hostile_ids_as_plain_text(env: Env, ids: dict[str, str]) -> None:
    marker = f"sec-{uuid.uuid4().hex[:12]}"
    # hypothesis may repeat a value: accounts, alerts and events stay new in the shared warehouse
    ids = {
        k: f"{v}~{marker}" if k in ("alert", "account", "account2", "event") else v
        for k, v in ids.items()
    }
    alerts = [hostile_alert(marker, ids, n) for n in range(2)]
    warehouse = EmbeddedWarehouse(env.settings.warehouse_path)
    try:
        migrate(warehouse, env.settings)
        store_alerts(warehouse, alerts)
        store_events(
            warehouse,
            hostile_entries(
                ids["account"], ids["provider"], ids["principal"], ids["event"], tamper=True
            ),
        )
        store_events(
            warehouse,
            hostile_entries(
                ids["account2"], ids["provider"], ids["principal"], ids["event"], tamper=False
            ),
        )
    finally:
        warehouse.close()

    # -- alerts tail: every record, a non-JSON one and a hostile severity included, then a sentinel
    from sinks.kafka_io import producer as kafka_producer

    sentinel = f"sentinel-{marker}"
    producer = kafka_producer(env.settings, role="test-hostile-alerts")
    key = marker.encode()  # one partition: the sentinel comes last
    for alert in [*alerts, {**alerts[0], "alert_id": f"{marker}-sev", "severity": ids["title"]}]:
        producer.send(env.settings.alerts_topic, orjson.dumps(alert), key=key)
    producer.send(env.settings.alerts_topic, b"not json [/bold] \x1b[31m", key=key)
    producer.send(
        env.settings.alerts_topic,
        orjson.dumps({**alerts[0], "alert_id": sentinel, "title": "\x00 end"}),
        key=key,
    )
    producer.flush()
    producer.close()
    code, out, errs = tail_until(env, sentinel)
    assert code == 0, out + errs
    clean(out + errs, "alerts tail")
    for key in ("account", "provider", "title"):
        assert visible(ids[key]) in shown(out), (key, out)
    assert visible(alerts[1]["alert_id"]) in shown(out), repr(out)
    assert "skipped a record that is not an alert" in errs, errs

    # -- ack, resolve, reopen (as the finding did it), and a refusal
    alert_id = alerts[0]["alert_id"]
    for action, by in (("ack", ids["by"]), ("resolve", ids["by"]), ("reopen", FINDING["by"])):
        done = run(env, "alerts", action, f"--by={by}", "--note", ids["title"], "--", alert_id)
        assert done.returncode == 0, (action, done.stdout, done.stderr)
        clean(done.stdout + done.stderr, f"alerts {action}")
        assert visible(alert_id) in shown(done.stdout) and visible(by) in shown(done.stdout), (
            done.stdout
        )
    refused = run(env, "alerts", "reopen", f"--by={ids['by']}", "--", alert_id)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    clean(refused.stdout + refused.stderr, "alerts reopen (refused)")
    assert "reopen refused" in refused.stderr

    # -- sql, in its three formats
    select = (
        "SELECT alert_id, account_id, provider_id, principal_id, title FROM audit.alerts FINAL"
        " WHERE detector = {d:String} ORDER BY alert_id"
    )
    table = run(env, "sql", select, "--param", f"d={marker}")
    assert table.returncode == 0, table.stderr
    clean(table.stdout + table.stderr, "sql")
    for key in ("account", "provider", "principal", "title"):
        assert visible(ids[key]) in shown(table.stdout), (key, table.stdout)
    as_csv = run(env, "sql", select, "--param", f"d={marker}", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    clean(as_csv.stdout, "sql --format csv")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[1:] == [
        [visible(a[c]) for c in ("alert_id", "account_id", "provider_id", "principal_id", "title")]
        for a in alerts
    ]
    as_json = run(env, "sql", select, "--param", f"d={marker}", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    clean(as_json.stdout, "sql --format json")
    assert [json.loads(line)["account_id"] for line in as_json.stdout.splitlines()] == [
        ids["account"]
    ] * 2  # lossless

    # -- a named query
    named = run(
        env,
        "query",
        "alerts_with_evidence",
        "--param",
        "from=2026-11-01 00:00:00",
        "--param",
        "to=2026-11-03 00:00:00",
        "--param",
        f"detector={marker}",
    )
    assert named.returncode == 0, named.stderr
    clean(named.stdout + named.stderr, "query")
    assert visible(ids["provider"]) in shown(named.stdout)

    # -- hunt: the hostile provider acted outside any grant on account2
    hunt = run(
        env, "hunt", "--detector", "listing_out_of_scope", *WHEN, "--account", ids["account2"]
    )
    assert hunt.returncode == 0, hunt.stderr
    clean(hunt.stdout + hunt.stderr, "hunt")
    assert visible(ids["provider"]) in shown(hunt.stdout), hunt.stdout
    hunt_json = run(
        env,
        "hunt",
        "--detector",
        "listing_out_of_scope",
        *WHEN,
        "--account",
        ids["account2"],
        "--format",
        "json",
    )
    clean(hunt_json.stdout, "hunt --format json")
    assert {json.loads(line)["provider_id"] for line in hunt_json.stdout.splitlines()} == {
        ids["provider"]
    }

    # -- verify-chain: the tampered account is named, as text
    chain = run(env, "verify-chain", "--account", ids["account"])
    assert chain.returncode == 1, chain.stdout + chain.stderr
    clean(chain.stdout + chain.stderr, "verify-chain")
    assert visible(ids["account"]) in shown(chain.stderr) and "chain breaks at seq 3" in shown(
        chain.stderr
    ), chain.stderr

    # -- evidence (unsigned: no key) and evidence verify, then with an edited event
    bundle = env.root / f"{marker}.zip"
    made = run(env, "evidence", "--account", ids["account2"], *WHEN, "--out", str(bundle))
    assert made.returncode == 0, made.stdout + made.stderr
    clean(made.stdout + made.stderr, "evidence")
    checked = run(env, "evidence", "verify", "--allow-unsigned", str(bundle))
    assert checked.returncode == 0 and checked.stdout.startswith("UNSIGNED"), (
        checked.stdout + checked.stderr
    )
    clean(checked.stdout + checked.stderr, "evidence verify")
    _edit_first_event(bundle)
    broken = run(env, "evidence", "verify", "--allow-unsigned", str(bundle))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    clean(broken.stdout + broken.stderr, "evidence verify (edited)")
    assert visible(f"{ids['event']}#0") in shown(broken.stderr), broken.stderr


@settings(max_examples=200, deadline=None)
@given(value=st.text(st.characters(exclude_categories=("Cs",))))
def test_a_string_query_parameter_is_the_value_itself(value: str) -> None:
    """ClickHouse reads `{p:String}` in its escaped format: a newline or a backslash in an id must
    not cut the value short or turn into another character (verify-chain stopped at such an account)."""
    from sinks.clickhouse_embedded import _text_param

    decoded = _unescape(_text_param(value))
    assert decoded == value


def _unescape(text: str) -> str:
    """ClickHouse's escaped-format reading of a parameter (the backslash escapes it documents)."""
    out, i = [], 0
    names = {
        "n": "\n",
        "t": "\t",
        "r": "\r",
        "0": "\0",
        "\\": "\\",
        "b": "\b",
        "f": "\f",
        "a": "\a",
        "v": "\v",
        "e": "\x1b",
    }
    while i < len(text):
        char = text[i]
        assert char not in "\t\n", f"a raw {char!r} ends a parameter value: {text!r}"
        if char == "\\":
            nxt = text[i + 1]
            out.append(names.get(nxt, nxt))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _edit_first_event(bundle: Path) -> None:
    import hashlib
    import zipfile

    with zipfile.ZipFile(bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    lines = files["events.jsonl"].splitlines()
    first = orjson.loads(lines[0])
    first["source"] = {**first.get("source", {}), "ip": "10.6.6.6"}
    files["events.jsonl"] = b"\n".join([orjson.dumps(first), *lines[1:]]) + b"\n"
    manifest = orjson.loads(files["manifest.json"])
    manifest["files"]["events.jsonl"] = hashlib.sha256(files["events.jsonl"]).hexdigest()
    files["manifest.json"] = orjson.dumps(manifest)
    with zipfile.ZipFile(bundle, "w") as z:
        for n, body in files.items():
            z.writestr(n, body)
