"""The command line's error paths: each fails at once, with one line that says what is wrong or
what to start, and the documented exit code (partnerwatch/preflight.py): 2 a bad option or value,
3 something needed is not there (no broker, a busy port, no warehouse or one not migrated)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnerwatch.local_worker import free_port
from pipeline.config import REPO_ROOT

pytestmark = pytest.mark.integration


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # 20 s: far under the 30 s client timeouts (and their tracebacks) these paths used to wait for
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update(
        {
            "PW_DATA_DIR": str(tmp_path / "data"),  # a fresh clone: nothing there
            "PW_WEB_PORT": str(free_port()),  # no worker answers
            "PW_KAFKA_BROKER": f"127.0.0.1:{free_port()}",  # no broker answers
            "PW_TOPIC_PREFIX": f"t{tmp_path.name[-8:]}.",
            "COLUMNS": "400",
        }
    )
    return env


def one_line_error(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """Exit `code`; `message` on one line of stderr; no traceback; at most one other (info) line."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert any(message in line for line in lines), (message, done.stderr)
    assert len(lines) <= 2, done.stderr


@pytest.fixture()
def listening() -> Iterator[int]:
    """A port some other program holds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


NO_BROKER = "no Kafka broker answers at"


@pytest.mark.parametrize(
    "args",
    [
        ("topics",),
        ("send", "{file}"),
        ("send", "--wait", "{file}"),
        ("alerts", "tail", "--source", "kafka"),
        ("alerts", "tail"),  # auto: no worker, so Kafka
        ("deadletter", "tail", "--no-follow"),
        ("deadletter", "show", "0:0"),
        ("grants", "add", "--account", "A1", "--provider", "p", "--scope", "listing.*"),
        ("simulate", "--count", "5"),
        ("worker",),
    ],
)
def test_no_broker(tmp_path: Path, args: tuple[str, ...]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1"}\n')
    env = base_env(tmp_path)
    done = run(env, *(a.replace("{file}", str(events)) for a in args))
    one_line_error(done, 3, NO_BROKER)
    assert (
        f"{env['PW_KAFKA_BROKER']} (PW_KAFKA_BROKER)" in done.stderr
        and "partnerwatch kafka start" in done.stderr
    )


FRESH = "run `partnerwatch migrate`"


@pytest.mark.parametrize(
    "args",
    [
        ("sql", "SELECT count() FROM audit.events"),
        ("query", "fund_moves", "-p", "from=2026-11-01", "-p", "to=2026-12-01"),
        ("verify-chain",),
        ("alerts", "list"),
        ("alerts", "show", "abc"),
        ("alerts", "ack", "abc", "--by", "me"),
        ("grants", "list"),
        ("report", "provider", "--account", "A1", "--provider", "p", "--quarter", "2026Q3"),
        (
            "hunt",
            "--detector",
            "provider_without_grant",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
        ),
        (
            "evidence",
            "--account",
            "A1",
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--out",
            "{tmp}/case.zip",
        ),
    ],
)
def test_fresh_clone_says_to_migrate_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = base_env(tmp_path)
    done = run(env, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    one_line_error(done, 3, FRESH)
    assert f"no warehouse at {tmp_path / 'data' / 'warehouse'}" in done.stderr
    assert not (
        tmp_path / "data"
    ).exists()  # not even an empty folder (ack no longer migrates silently)


def test_an_unmigrated_warehouse_is_refused_until_migrate(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    (tmp_path / "data" / "warehouse").mkdir(parents=True)  # a folder, but never migrated
    done = run(env, "verify-chain")
    one_line_error(done, 3, "is empty (never migrated)")
    assert FRESH in done.stderr
    assert "DB::Exception" not in done.stderr
    migrated = run(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    verified = run(env, "verify-chain")
    assert verified.returncode == 0, verified.stderr
    assert (
        f"warehouse: embedded chDB at {tmp_path / 'data' / 'warehouse'}" in verified.stderr
    )  # says which


@pytest.fixture()
def migrated(tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path)
    done = run(env, "migrate")
    assert done.returncode == 0, done.stderr
    return env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sql", "-f", "xml", "SELECT 1"), "'xml' is not one of"),
        (
            ("sql", "--columns", "nope", "SELECT 1 AS a"),
            "--columns: no column nope; the result has: a",
        ),
        (
            ("alerts", "tail", "--detector", "nosuch"),
            "--detector: unknown detector 'nosuch'; known: account_takeover_sequence",
        ),
        (("alerts", "tail", "--severity", "loud"), "'loud' is not one of"),
        (("alerts", "tail", "--source", "carrier-pigeon"), "is not one of"),
        (
            ("alerts", "tail", "--account", "NOPE"),
            "--account: unknown account (no event of it is stored) 'NOPE'",
        ),
        (("alerts", "list", "--status", "lost"), "'lost' is not one of"),
        (("alerts", "list", "--detector", "nosuch"), "unknown detector 'nosuch'"),
        (
            ("report", "provider", "--account", "NOPE", "--provider", "p", "--quarter", "2026Q3"),
            "unknown account (no event of it is stored) 'NOPE'",
        ),
        (
            ("verify-chain", "--account", "NOPE"),
            "unknown account (no event of it is stored) 'NOPE'",
        ),
        (
            ("hunt", "--detector", "nosuch", "--from", "2026-11-01", "--to", "2026-12-01"),
            "unknown detector 'nosuch'",
        ),
        (("kafka", "frobnicate"), "is not one of"),
        (("digest", "create", "--period", "week"), "'week' is not one of"),
        (("deadletter", "show", "seventeen"), "PARTITION:OFFSET"),
        (
            ("deadletter", "tail", "--reason", "bored"),
            "--reason: unknown reason 'bored'; known: bad_encoding",
        ),
        (
            ("grants", "add", "--account", "A1", "--provider", "p", "--scope", "listing.fly"),
            "grant refused: scopes: 'listing.fly' names no action",
        ),
        (
            (
                "grants",
                "add",
                "--account",
                "A1",
                "--provider",
                "p",
                "--scope",
                "*",
                "--ip",
                "not-a-cidr",
            ),
            "grant refused:",
        ),
        (
            (
                "grants",
                "add",
                "--account",
                "A1",
                "--provider",
                "p",
                "--scope",
                "*",
                "--expires",
                "soon",
            ),
            "expires: a date",
        ),
        (("grants", "import", "{tmp}/grants.txt"), "give a .csv, .yaml or .yml file"),
    ],
)
def test_bad_options_and_values(
    migrated: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "grants.txt").write_text("account\n")
    done = run(migrated, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PW_LOG_LEVEL", "loud"), ("PW_DATA_DIR", ""), ("PW_KAFKA_BROKER", "nohost:port")],
)
def test_bad_settings(tmp_path: Path, variable: str, value: str) -> None:
    done = run(base_env(tmp_path) | {variable: value}, "sql", "SELECT 1")
    one_line_error(done, 2, f"configuration error: {variable}={value!r}")


def test_log_level_in_capitals_is_accepted(migrated: dict[str, str]) -> None:
    done = run(migrated | {"PW_LOG_LEVEL": "INFO"}, "sql", "SELECT 1 AS one", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"one":1}'


def test_data_dir_default_does_not_depend_on_the_current_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PW_DATA_DIR"}
    shown = []
    for cwd in (REPO_ROOT, tmp_path):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pipeline.config import Settings; print(Settings.from_env().data_dir)",
            ],
            env=env | {"PYTHONPATH": str(REPO_ROOT)},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        shown.append(done.stdout.strip())
    assert shown == [str(REPO_ROOT / "data")] * 2


def test_a_relative_data_dir_is_shown_absolute(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"PW_DATA_DIR": "here"}
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", "sql", "SELECT 1"],
        env=env | {"PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    one_line_error(done, 3, f"no warehouse at {tmp_path / 'here' / 'warehouse'}")


def _kafka_libs() -> Path | None:
    found = sorted((REPO_ROOT / ".cache" / "kafka").glob("*/libs/.complete"))
    return found[-1].parent if found else None


@pytest.mark.parametrize("args", [("kafka", "start"), ("evaluate", "--count", "10")])
def test_busy_kafka_port(tmp_path: Path, listening: int, args: tuple[str, ...]) -> None:
    libs = _kafka_libs()
    if libs is None:
        pytest.skip("the Kafka jars are not fetched (`bash infra/kafka/kafka.sh fetch`)")
    env = base_env(tmp_path) | {
        "PW_KAFKA_BROKER": f"127.0.0.1:{listening}",
        "PW_KAFKA_HOME": str(tmp_path / "kafka"),  # a runner of its own: no broker of it runs
        "PW_KAFKA_LIBS": str(libs),
    }
    done = run(env, *args)
    one_line_error(
        done, 3, f"port {listening} on 127.0.0.1 (PW_KAFKA_BROKER) is in use by another program"
    )
    assert "BindException" not in done.stderr


def test_busy_web_port(tmp_path: Path, listening: int, kafka_broker: str) -> None:
    env = base_env(tmp_path) | {"PW_WEB_PORT": str(listening), "PW_KAFKA_BROKER": kafka_broker}
    for args in (("worker",), ("demo", "--count", "10")):
        done = run(env, *args)
        lines = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not line.startswith("kafka.sh:")
        ]
        assert done.returncode == 3, done.stderr
        assert lines == [
            f"port {listening} on 127.0.0.1 (PW_WEB_PORT) is in use by another program: stop it, "
            "or choose a free port for the worker's web server with PW_WEB_PORT"
        ], done.stderr


ROUTES = '[outputs.x]\ntype = "webhook"\nurl = "http://127.0.0.1:1/"\nsecret_env = "PW_TEST_HOOK_SECRET"\n[[routes]]\nname = "r"\noutputs = ["x"]\n'


def test_routes_file_by_option_or_environment(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"PW_TEST_HOOK_SECRET": "s3cret-for-the-test"}
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    by_option = run(env, "alerts", "check-routes", "--routes", str(routes))
    assert by_option.returncode == 0, by_option.stderr
    assert "r: severity >= " in by_option.stdout and "-> x" in by_option.stdout
    by_env = run(env | {"PW_ALERT_ROUTES": str(routes)}, "alerts", "check-routes")
    assert by_env.returncode == 0 and by_env.stdout == by_option.stdout
    one_line_error(
        run(env, "alerts", "check-routes"),
        2,
        "no routes file: give --routes FILE or set PW_ALERT_ROUTES",
    )
    routes.write_text(ROUTES.replace("webhook", "pager"))
    bad = run(
        env | {"PW_ALERT_ROUTES": str(tmp_path / "other.toml")},
        "alerts",
        "check-routes",
        "--routes",
        str(routes),
    )
    assert bad.returncode == 2 and "outputs.x" in bad.stderr  # --routes wins over the variable
    # and the feed itself needs the broker: one line, not a client timeout
    routes.write_text(ROUTES)
    one_line_error(run(env, "alerts", "feed", "--routes", str(routes)), 3, NO_BROKER)
