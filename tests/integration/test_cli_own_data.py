"""Your own data, end to end through the real worker on Kafka (a topic prefix of its own): the
README's quickstart as written (and the Chinese one's commands are the same), the grants
commands with the state they leave (folded from the ledger, and as the detectors see it),
`send --wait` verdicts, the dead-letter reader, and `alerts list|show`."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
ZH = REPO_ROOT / "docs" / "zh" / "quickstart.md"


@pytest.fixture(scope="module")
def ns(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    namespace = Namespace(tmp_path_factory.mktemp("own-data"))
    worker = Worker(namespace).start()
    try:
        yield namespace
    finally:
        worker.stop()


def cli(ns: Namespace, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=ns.env | {"COLUMNS": "250"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def commands(markdown: str, heading: str | None = None) -> list[str]:
    """The `partnerwatch ...` lines of the bash blocks (of one section), comments dropped."""
    if heading is not None:
        start = markdown.index(heading)
        following = markdown.find("\n## ", start + len(heading))
        markdown = markdown[start : following if following >= 0 else None]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            text = raw.split("  #", 1)[0].strip()
            if text.startswith(("partnerwatch ", "make ")):
                out.append(" ".join(text.split()))
    return out


def grants(ns: Namespace, *extra: str) -> dict[str, dict[str, object]]:
    done = cli(ns, "grants", "list", "--format", "json", *extra)
    return {g["grant_id"]: g for g in map(orjson.loads, done.stdout.splitlines())}


def test_the_readme_quickstart_works_as_written(ns: Namespace) -> None:
    steps = commands(README.read_text(), "## Your own data")
    assert all(s.startswith("partnerwatch ") for s in steps)
    assert steps[:2] == [
        "partnerwatch kafka start",
        "partnerwatch worker &",
    ]  # the fixtures' broker and worker
    alert_id = None
    for step in steps[2:]:
        args = shlex.split(step)[1:]
        if "ALERT_ID" in args:
            if alert_id is None:
                # the alerts are stored a moment after their events
                wait_for(
                    lambda: (
                        ns.scalar("SELECT count() FROM audit.alerts WHERE account_id = 'A1EXAMPLE'")
                        >= 4
                    ),
                    60,
                    "alerts stored",
                )
                listed = [
                    orjson.loads(x)
                    for x in cli(ns, "alerts", "list", "--format", "json").stdout.splitlines()
                ]
                alert_id = next(
                    a["alert_id"] for a in listed if a["detector"] == "funds_without_approval"
                )
            args = [alert_id if a == "ALERT_ID" else a for a in args]
        if args[:2] == ["alerts", "list"]:
            wait_for(
                lambda: (
                    ns.scalar("SELECT count() FROM audit.alerts WHERE account_id = 'A1EXAMPLE'")
                    >= 4
                ),
                60,
                "alerts stored",
            )
        done = cli(ns, *args)
        if args[:2] == ["send", "--wait"]:
            assert "events.jsonl: 5 accepted" in done.stdout, done.stdout
        if args[:2] == ["alerts", "list"]:
            listed = [
                orjson.loads(x)
                for x in cli(ns, "alerts", "list", "--format", "json").stdout.splitlines()
            ]
            assert {a["detector"] for a in listed} == {
                "price_change_over_limit",
                "ip_outside_allowlist",
                "funds_without_approval",
                "listing_out_of_scope",
            }, sorted((a["detector"], a["title"]) for a in listed)
            assert all(
                a["alert_id"] in done.stdout.replace("\n", "") or a["alert_id"][:12] in done.stdout
                for a in listed
            )
        if args[:2] == ["alerts", "show"]:
            assert "funds_without_approval" in done.stdout and "example-0004" in done.stdout
        if args[:2] == ["alerts", "ack"]:
            assert "acknowledged by alice" in done.stdout
    state = grants(ns, "--account", "A1EXAMPLE")
    by_provider = {g["provider_id"]: g for g in state.values()}
    assert by_provider["agency-1"]["scopes"] == ["listing.*", "inventory.update"]
    assert by_provider["agency-1"]["ip_allowlist"] == ["203.0.113.0/24"]
    assert by_provider["agency-3"]["marketplaces"] == ["DE", "UK"]
    assert by_provider["agency-3"]["valid_until"] == "2036-12-31T00:00:00.000Z"
    shown = cli(ns, "alerts", "show", alert_id or "", "--format", "json")
    assert orjson.loads(shown.stdout)["status"] == "acknowledged"


def test_the_chinese_quickstart_has_the_same_commands() -> None:
    english = commands(README.read_text(), "## Two commands") + commands(
        README.read_text(), "## Your own data"
    )
    chinese = commands(ZH.read_text())
    assert "make demo" in english and "partnerwatch grants list" in english
    assert chinese == english


def test_grants_add_replace_revoke_and_import_through_the_worker(
    ns: Namespace, tmp_path: Path
) -> None:
    account = "A2GRANTS"
    cli(
        ns,
        "grants",
        "add",
        "--account",
        account,
        "--provider",
        "prov-g",
        "--grant-id",
        "g-one",
        "--scope",
        "listing.*",
        "--principal",
        "u1",
        "--principal",
        "u2",
        "--marketplace",
        "GB",
        "--ip",
        "10.1.2.3/24",
        "--expires",
        "2036-01-01T08:00:00+08:00",
    )
    state = grants(ns, "--account", account)
    assert state["g-one"]["principals"] == ["u1", "u2"] and state["g-one"]["marketplaces"] == ["UK"]
    assert state["g-one"]["ip_allowlist"] == ["10.1.2.0/24"]
    assert (
        state["g-one"]["valid_until"] == "2036-01-01T00:00:00.000Z"
        and state["g-one"]["status"] == "live"
    )

    # the same grant_id replaces the grant
    cli(
        ns,
        "grants",
        "add",
        "--account",
        account,
        "--provider",
        "prov-g",
        "--grant-id",
        "g-one",
        "--scope",
        "report.download",
    )
    assert grants(ns, "--account", account)["g-one"]["scopes"] == ["report.download"]

    yaml_file = tmp_path / "more.yaml"
    yaml_file.write_text(
        f"- account: {account}\n  provider: prov-y\n  scopes: [inventory.update]\n  grant_id: g-yaml\n"
        f"- {{account: {account}, provider: prov-z, scopes: '*', grant_id: g-star, expires: 2001-01-01}}\n"
    )
    cli(ns, "grants", "import", str(yaml_file))
    csv_file = tmp_path / "more.csv"
    csv_file.write_text(
        f"account,provider,scopes,grant_id,principals\n{account},prov-c,listing.update;listing.create,g-csv,a b\n"
    )
    cli(ns, "grants", "import", str(csv_file))
    live = grants(ns, "--account", account)
    assert set(live) == {"g-one", "g-yaml", "g-csv"}  # g-star expired in 2001
    assert live["g-csv"]["principals"] == ["a", "b"] and live["g-csv"]["scopes"] == [
        "listing.update",
        "listing.create",
    ]
    assert grants(ns, "--account", account, "--all")["g-star"]["status"] == "expired"

    cli(ns, "grants", "revoke", "g-yaml", "--account", account)
    assert "g-yaml" not in grants(ns, "--account", account)
    assert grants(ns, "--account", account, "--all")["g-yaml"]["status"] == "revoked"
    again = cli(ns, "grants", "revoke", "g-yaml", "--account", account, check=False)
    assert again.returncode == 1 and "no live grant 'g-yaml'" in again.stderr

    # the detectors decide with the same state: prov-y's grant is gone, prov-c's covers principal a
    events = tmp_path / "after.jsonl"
    base = {
        "occurred_at": "2026-11-02T10:00:00Z",
        "account_id": account,
        "marketplace": "DE",
        "source": {"ip": "10.1.2.9"},
        "resource": {"type": "listing", "id": "SKU-9"},
    }
    events.write_bytes(
        b"\n".join(
            orjson.dumps(e)
            for e in (
                {
                    **base,
                    "event_id": "grants-after-1",
                    "action": "inventory.update",
                    "actor": {"type": "provider", "provider_id": "prov-y", "principal_id": "y1"},
                },
                {
                    **base,
                    "event_id": "grants-after-2",
                    "action": "listing.update",
                    "actor": {"type": "provider", "provider_id": "prov-c", "principal_id": "a"},
                },
            )
        )
        + b"\n"
    )
    cli(ns, "send", "--wait", str(events))
    wait_for(
        lambda: (
            ns.scalar(
                "SELECT count() FROM audit.alerts WHERE account_id = {a:String}", {"a": account}
            )
            >= 1
        ),
        60,
        "alert stored",
    )
    rows = ns.sql(
        "SELECT detector, provider_id FROM audit.alerts FINAL WHERE account_id = {a:String}",
        {"a": account},
    )
    assert ["listing_out_of_scope", "prov-y"] in rows  # its only grant was revoked
    assert all(provider != "prov-c" for _, provider in rows)


def test_send_wait_reports_each_verdict_and_the_dead_letters_are_readable(
    ns: Namespace, tmp_path: Path
) -> None:
    good = {
        "event_id": "verdict-1",
        "occurred_at": "2026-11-02T10:00:00Z",
        "account_id": "A3VERDICT",
        "action": "auth.login",
        "actor": {"type": "seller", "principal_id": "owner"},
    }
    file = tmp_path / "mixed.jsonl"
    file.write_bytes(
        b"\n".join(
            [
                orjson.dumps(good),
                b'{"event_id": "broken"',
                orjson.dumps({**good, "event_id": "verdict-2", "action": "listing.explode"}),
                orjson.dumps(good),  # a repeat of line 1
            ]
        )
        + b"\n"
    )
    dry = cli(ns, "send", "--dry-run", str(file), check=False)
    assert (
        dry.returncode == 1
        and "nothing sent" in dry.stdout
        and "mixed.jsonl:2: not_json" in dry.stderr
    )
    done = cli(ns, "send", "--wait", str(file), check=False)
    assert done.returncode == 1, done.stderr
    assert "mixed.jsonl: 1 accepted, 2 dead-lettered, 1 repeat" in done.stdout, done.stdout
    assert (
        "mixed.jsonl:2: dead-lettered not_json" in done.stderr
        and "mixed.jsonl:3: dead-lettered unknown_action" in done.stderr
    )
    assert "mixed.jsonl:4: repeat" in done.stderr

    tail = cli(ns, "deadletter", "tail", "--no-follow", "--format", "json")
    letters = [orjson.loads(x) for x in tail.stdout.splitlines()]
    assert sorted(d["reason"] for d in letters) == ["not_json", "unknown_action"]
    only = cli(ns, "deadletter", "tail", "--no-follow", "--reason", "unknown_action")
    assert "unknown_action" in only.stdout and "not_json" not in only.stdout
    assert "1 dead letter(s): unknown_action 1" in only.stderr
    position = next(d["position"] for d in letters if d["reason"] == "not_json")
    shown = cli(ns, "deadletter", "show", position)
    assert "not_json" in shown.stdout and '{"event_id": "broken"' in shown.stdout
    missing = cli(ns, "deadletter", "show", "0:999999", check=False)
    assert missing.returncode == 1 and "no dead letter at 0:999999" in missing.stderr
