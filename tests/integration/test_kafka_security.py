"""Kafka over SASL_SSL: a second, private broker with a SASL_SSL listener (SCRAM-SHA-512 user, a
certificate signed by a CA this test makes with openssl), the whole pipeline through it, and the
errors an operator gets for a wrong password or a missing CA.

Only the private broker is started and stopped here; the shared one on PW_KAFKA_BROKER is only
where the runner's jars come from.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, free_port, wait_for
from pipeline.config import REPO_ROOT, Settings
from pipeline.simulation.traffic import generate
from sinks.kafka_io import KafkaAccessError, check_access, ensure_topics
from tests.integration.test_pipeline import assert_chains_verify
from tests.reliability.harness import PrivateBroker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make the test CA"),
]

USER = "pw-worker"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> Path:
    """A self-signed CA: `<name>.key`, `<name>.pem`."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        cwd=folder,
    )
    return folder / f"{name}.pem"


def make_broker_keystore(folder: Path, ca: str, password: str) -> Path:
    """The broker's key and a certificate for 127.0.0.1 signed by `ca`, as a PKCS12 keystore."""
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        cwd=folder,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "broker.pem",
        cwd=folder,
    )
    openssl(
        "pkcs12",
        "-export",
        "-in",
        "broker.pem",
        "-inkey",
        "broker.key",
        "-certfile",
        f"{ca}.pem",
        "-out",
        "broker.p12",
        "-passout",
        f"pass:{password}",
        cwd=folder,
    )
    return folder / "broker.p12"


@dataclass
class SecureBroker:
    address: str  # the SASL_SSL listener
    plaintext: str  # the broker's own PLAINTEXT listener
    ca: Path
    other_ca: Path  # a CA that did not sign the broker's certificate
    password: str

    def client_env(self, **changes: str) -> dict[str, str]:
        env = {
            "PW_KAFKA_BROKER": self.address,
            "PW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PW_KAFKA_SASL_USERNAME": USER,
            "PW_KAFKA_SASL_PASSWORD": self.password,
            "PW_KAFKA_SSL_CAFILE": str(self.ca),
        }
        env.update(changes)
        return {k: v for k, v in env.items() if v}

    def settings(self, **changes: str) -> Settings:
        return Settings.from_env(self.client_env(**changes))


@pytest.fixture(scope="module")
def secure_broker(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("kafka-sasl")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    keystore_password = secrets.token_hex(12)
    keystore = make_broker_keystore(folder, "ca", keystore_password)
    broker = PrivateBroker(folder / "home")
    sasl_port = free_port()
    password = secrets.token_hex(16)
    broker.env.update(
        PW_KAFKA_SASL_SSL_PORT=str(sasl_port),
        PW_KAFKA_SSL_KEYSTORE=str(keystore),
        PW_KAFKA_SSL_KEYSTORE_PASSWORD=keystore_password,
        PW_KAFKA_SASL_USERNAME=USER,
        PW_KAFKA_SASL_PASSWORD=password,
    )
    broker.start()
    try:
        yield SecureBroker(
            f"127.0.0.1:{sasl_port}",
            broker.address,
            folder / "ca.pem",
            folder / "other-ca.pem",
            password,
        )
    finally:
        broker.stop()
    assert password not in (folder / "home" / "broker.log").read_text(errors="replace")


def test_the_pipeline_runs_through_sasl_ssl(secure_broker: SecureBroker, tmp_path: Path) -> None:
    ns = Namespace(tmp_path, extra_env=secure_broker.client_env())
    assert ns.settings.kafka_security_protocol == "SASL_SSL"
    worker = Worker(ns).start()
    try:
        stream = [e for e, _ in generate(400, seed=23, attack_rate=0.02)]
        assert ns.send(stream) == 400
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 400, 180, "400 events stored"
        )
        assert ns.scalar("SELECT uniqExact(account_id, event_id) FROM audit.events") == 400
        assert_chains_verify(ns)
        ledger = [
            orjson.loads(r.value) for r in ns.read_topic(ns.settings.ledger_topic, expect=400)
        ]
        assert {e["event_id"] for e in ledger} == {e["event_id"] for e in stream}
        assert worker.alive()
    finally:
        worker.stop()
    # the clients went through the SASL_SSL listener: nothing of this namespace is reachable
    # without credentials there, and the topics exist on this broker, not on the shared one
    plaintext = Settings.from_env({"PW_KAFKA_BROKER": secure_broker.address})
    with pytest.raises(KafkaAccessError, match="closed the connection"):
        check_access(plaintext, timeout=10)


def partnerwatch(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env={**base, **env, "PW_DATA_DIR": str(cwd / "data")},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_wrong_password_stops_the_worker_with_a_clear_error(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    wrong = "not-" + secure_broker.password
    done = partnerwatch(
        secure_broker.client_env(PW_KAFKA_SASL_PASSWORD=wrong), "worker", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "SCRAM-SHA-512 authentication failed for user 'pw-worker'" in last, done.stderr
    assert "PW_KAFKA_SASL_PASSWORD" in last
    assert wrong not in done.stderr and wrong not in done.stdout
    # and the right one is accepted by the same check
    check_access(secure_broker.settings(), timeout=10)


@pytest.mark.parametrize(
    ("cafile", "says"),
    [
        ("", "not trusted by the system's trust store: set PW_KAFKA_SSL_CAFILE"),
        ("other", "is not signed by the CA in PW_KAFKA_SSL_CAFILE="),
        ("missing", "PW_KAFKA_SSL_CAFILE="),
    ],
)
def test_a_missing_or_wrong_ca_stops_with_a_clear_error(
    secure_broker: SecureBroker, tmp_path: Path, cafile: str, says: str
) -> None:
    path = {
        "": "",
        "other": str(secure_broker.other_ca),
        "missing": str(tmp_path / "no-such-ca.pem"),
    }[cafile]
    settings = secure_broker.settings(PW_KAFKA_SSL_CAFILE=path)
    with pytest.raises(KafkaAccessError) as caught:
        ensure_topics(settings)
    assert says in str(caught.value)
    if cafile == "missing":
        assert "no such file" in str(caught.value)
    else:
        assert "certificate" in str(caught.value)
    done = partnerwatch(secure_broker.client_env(PW_KAFKA_SSL_CAFILE=path), "topics", cwd=tmp_path)
    assert done.returncode == 1 and says in done.stderr, done.stderr


def test_the_runner_refuses_a_sasl_listener_without_its_keystore(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update(
        PW_KAFKA_HOME=str(tmp_path),
        PW_KAFKA_BROKER=f"127.0.0.1:{free_port()}",
        PW_KAFKA_SASL_SSL_PORT=str(free_port()),
    )
    from partnerwatch.common import KAFKA_SH

    done = subprocess.run(
        ["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "PW_KAFKA_SSL_KEYSTORE is required" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was written
