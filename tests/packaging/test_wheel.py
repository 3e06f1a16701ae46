"""A non-editable install works: build the wheel, install it into a fresh venv outside the repository,
migrate the embedded warehouse and run a named query with the installed `partnerwatch` command.

The fresh venv gets the third-party dependencies from the running (dev) venv through a `.pth` file
naming its site-packages. A directory added by a `.pth` line does not have its own `.pth` files run,
so the dev venv's editable finder (which would import the checkout) is not loaded; the test asserts
that the installed copy is what runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import orjson
import pytest

from pipeline.config import REPO_ROOT
from pipeline.simulation.traffic import generate

pytestmark = pytest.mark.integration

PACKAGES = ("pipeline", "streams", "detectors", "sinks", "sources", "partnerwatch")
SEED, COUNT = 7, 400
ACCOUNT, PROVIDER = "A0000SELLER", "prov-001"

#: Run with the installed interpreter: migrations applied by the CLI, then simulated events stored
#: through the installed packages (the ledger sequences them per account, as the worker does).
SEED_SCRIPT = f"""
import os
from pathlib import Path
from pipeline.config import Settings
from pipeline.event import format_ms, normalize, timestamp_ms
from pipeline.ledger import ChainHead, append
from pipeline.simulation.traffic import generate
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse

heads, entries, clock = {{}}, [], 0
for raw, _ in generate({COUNT}, seed={SEED}, accounts=2, providers=2, attack_rate=0.0):
    event = normalize(raw)
    clock = max(clock + 1, timestamp_ms(event["occurred_at"], "occurred_at") + 2000)
    entry, heads[event["account_id"]] = append(heads.get(event["account_id"], ChainHead()), event, format_ms(clock))
    entries.append(entry)
wh = EmbeddedWarehouse(Settings.from_env().warehouse_path)
try:
    print(store_events(wh, entries))
finally:
    wh.close()
"""


def _copy_sources(dest: Path) -> None:
    """What the build needs, from the checkout: no build/ or egg-info left behind in the repository."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package,
            dest / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )


def _run(
    args: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO_ROOT)
    src, dist, venv = root / "src", root / "dist", root / "venv"
    src.mkdir()
    _copy_sources(src)
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", dist], cwd=src)
    (wheel,) = dist.glob("partnerwatch-*.whl")

    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    dev = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_partnerwatch_dev_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(dev)))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            wheel,
        ]
    )
    return {"root": root, "wheel": wheel, "venv": venv, "site": site, "python": python}


@pytest.fixture()
def env(installed: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """No PW_* or PYTHONPATH from outside; the warehouse and caches in a temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_") and k != "PYTHONPATH"}
    env.update(
        {
            "PW_DATA_DIR": str(tmp_path / "data"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "COLUMNS": "250",
        }
    )
    return env


def test_wheel_ships_the_package_data(installed: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    checkout = {
        p.relative_to(REPO_ROOT).as_posix()
        for pattern in (
            "sinks/migrations/*.sql",
            "pipeline/forensics/query_library/*.sql",
            "partnerwatch/kafka_runner/*",
        )
        for p in REPO_ROOT.glob(pattern)
    }
    assert len(checkout) >= 10 and checkout <= names, sorted(checkout - names)
    license_files = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert license_files, "LICENSE not in the wheel's dist-info"
    metadata = zipfile.ZipFile(installed["wheel"]).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    )
    assert b"License-Expression: Apache-2.0" in metadata
    # a YAML routes file needs it at run time (sinks/alert_outputs/routes.py), not only in the dev extra
    assert re.search(rb"^Requires-Dist: pyyaml>=[0-9.]+\s*$", metadata, re.M | re.I)


def test_the_installed_copy_runs_not_the_checkout(
    installed: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    code = "import pipeline, sinks, partnerwatch.common as c; print(pipeline.__file__); print(sinks.__file__); print(c.KAFKA_SH)"
    out = _run([installed["python"], "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert len(out) == 3
    for path in out:
        assert Path(path).is_relative_to(installed["site"]), path
        assert not Path(path).resolve().is_relative_to(REPO_ROOT), path
    assert Path(out[2]).is_file() and (Path(out[2]).parent / "pom.xml").is_file()


def test_migrate_and_a_named_query_from_the_installed_command(
    installed: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    cli = installed["venv"] / "bin" / "partnerwatch"
    work = tmp_path / "elsewhere"
    work.mkdir()
    migrated = _run([cli, "migrate"], cwd=work, env=env).stdout
    expected = [
        p.name.removesuffix(".sql")
        for p in sorted((REPO_ROOT / "sinks" / "migrations").glob("*.sql"))
    ]
    assert expected and f"applied: {', '.join(expected)}" in " ".join(migrated.split())
    assert "none (up to date)" in _run([cli, "migrate"], cwd=work, env=env).stdout

    assert _run([installed["python"], "-c", SEED_SCRIPT], cwd=work, env=env).stdout.strip() == str(
        COUNT
    )
    listed = _run([cli, "query", "--list", "--format", "json"], cwd=work, env=env).stdout
    names = [orjson.loads(line)["name"] for line in listed.splitlines() if line.strip()]
    assert "provider_timeline" in names
    assert sorted(names) == sorted(
        p.stem for p in (REPO_ROOT / "pipeline" / "forensics" / "query_library").glob("*.sql")
    )

    params = [f"account={ACCOUNT}", f"provider={PROVIDER}", "from=2026-11-02", "to=2026-11-03"]
    result = _run(
        [
            cli,
            "query",
            "provider_timeline",
            "--format",
            "json",
            *(x for p in params for x in ("-p", p)),
        ],
        cwd=work,
        env=env,
    ).stdout
    rows = [orjson.loads(line) for line in result.splitlines() if line.strip()]
    want = [
        e["event_id"]
        for e, _ in generate(COUNT, seed=SEED, accounts=2, providers=2, attack_rate=0.0)
        if e["account_id"] == ACCOUNT
        and e["actor"]["type"] == "provider"
        and e["actor"].get("provider_id") == PROVIDER
    ]
    assert len(want) > 20
    assert [r["event_id"] for r in rows] == want


def test_kafka_runner_keeps_its_cache_outside_site_packages(
    installed: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """Installed, the runner's default home is the user cache (XDG_CACHE_HOME), not site-packages.

    `status` is 0 only when the port answers and the pid file's process runs: a listening socket
    and this process's pid, planted where the default home must be. Nothing is started or stopped.
    """
    cli = installed["venv"] / "bin" / "partnerwatch"
    home = Path(env["XDG_CACHE_HOME"]) / "partnerwatch" / "kafka"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        env = {**env, "PW_KAFKA_BROKER": f"127.0.0.1:{listener.getsockname()[1]}"}
        assert (
            subprocess.run([cli, "kafka", "status"], cwd=tmp_path, env=env, timeout=60).returncode
            == 1
        )
        home.mkdir(parents=True)
        (home / "broker.pid").write_text(f"{os.getpid()}\n")
        status = subprocess.run(
            [cli, "kafka", "status"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
    assert not (installed["site"] / ".cache").exists()
