"""One setting for the broker: the local runner listens on the port of PW_KAFKA_BROKER, the address
the clients use. Nothing here starts or stops the shared broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from partnerwatch.common import KAFKA_SH
from partnerwatch.local_worker import free_port
from pipeline.config import REPO_ROOT

pytestmark = pytest.mark.integration


def env_with(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update(variables)
    return env


def kafka_sh(action: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), action],
        env=env_with(**variables),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_old_port_variable_is_refused_with_the_one_to_use() -> None:
    done = kafka_sh("status", PW_KAFKA_PORT="19092")
    assert done.returncode == 2
    assert "PW_KAFKA_BROKER=127.0.0.1:19092" in done.stderr


@pytest.mark.parametrize(
    ("broker", "says"),
    [
        ("10.1.2.3:9092", "is not local"),
        ("127.0.0.1:9092,127.0.0.1:9093", "several brokers"),
        ("127.0.0.1:ninety", "must be a number"),
    ],
)
def test_start_refuses_an_address_it_cannot_serve(broker: str, says: str) -> None:
    done = kafka_sh("start", PW_KAFKA_BROKER=broker)
    assert done.returncode == 2 and says in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"PW_KAFKA_NODE_ID": "0"}, "PW_KAFKA_NODE_ID=0: must be a whole number from 1"),
        ({"PW_KAFKA_REPLICATION": "three"}, "PW_KAFKA_REPLICATION=three: must be a whole number"),
        (
            {"PW_KAFKA_REPLICATION": "3", "PW_KAFKA_MIN_INSYNC": "4"},
            "PW_KAFKA_MIN_INSYNC=4 is more than PW_KAFKA_REPLICATION=3",
        ),
        (
            {
                "PW_KAFKA_NODE_ID": "2",
                "PW_KAFKA_CONTROLLER_PORT": "19093",
                "PW_KAFKA_QUORUM_VOTERS": "1@127.0.0.1:19093,2@127.0.0.1:19094",
            },
            "does not name this node as 2@127.0.0.1:19093",
        ),
    ],
)
def test_start_refuses_a_cluster_node_it_cannot_be(
    variables: dict[str, str], says: str, tmp_path: Path
) -> None:
    """A node of a local cluster (tests/reliability/kraft_cluster.py): its settings are checked
    before anything is written or started."""
    done = kafka_sh("start", PW_KAFKA_HOME=str(tmp_path), **variables)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_status_asks_the_port_of_the_clients_address(kafka_broker: str, tmp_path: Path) -> None:
    assert kafka_sh("status", PW_KAFKA_BROKER=kafka_broker).returncode == 0
    assert kafka_sh("status", PW_KAFKA_BROKER=f"127.0.0.1:{free_port()}").returncode == 1
    # `partnerwatch kafka` passes the address Settings resolved, here from the PW_ENV_FILE file
    for broker, expected in ((kafka_broker, 0), (f"127.0.0.1:{free_port()}", 1)):
        env_file = tmp_path / "pw.env"
        env_file.write_text(f"PW_KAFKA_BROKER={broker}\n")
        done = subprocess.run(
            [sys.executable, "-m", "partnerwatch", "kafka", "status"],
            env=env_with(PW_ENV_FILE=str(env_file)),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == expected, (broker, done.stderr)
