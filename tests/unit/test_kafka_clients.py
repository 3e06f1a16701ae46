"""One Kafka client factory (sinks/kafka_io.py): every client in the product is built there, with
the same connection and security options, and the Kafka security settings are checked."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest

from pipeline.config import REPO_ROOT, Settings
from sinks import kafka_io

PRODUCT = ("partnerwatch", "pipeline", "streams", "sources", "sinks", "detectors")
CLIENTS = {
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "AIOKafkaAdminClient",
    "KafkaConsumer",
    "KafkaProducer",
    "KafkaAdminClient",
}
FACTORY = REPO_ROOT / "sinks" / "kafka_io.py"

SASL = {
    "PW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "PW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "PW_KAFKA_SASL_USERNAME": "svc",
    "PW_KAFKA_SASL_PASSWORD": "s3cret-value",
}


def client_constructions(path: Path) -> list[str]:
    """`Name(` calls of a Kafka client class in a file (however it was imported)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in CLIENTS:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}")
    return found


def test_every_kafka_client_in_the_product_is_built_by_the_factory() -> None:
    outside = [
        hit
        for package in PRODUCT
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if path != FACTORY
        for hit in client_constructions(path)
    ]
    assert outside == [], "build these with sinks/kafka_io.py"
    # the check sees constructions at all: the factory itself has one per client class
    assert {hit.rsplit(" ", 1)[1] for hit in client_constructions(FACTORY)} == CLIENTS


def test_house_defaults_and_caller_options() -> None:
    s = Settings.from_env({"PW_APP_ID": "pw-x"})
    grouped = kafka_io._consumer_options(
        s, "loader", "pw-x-loader", {"max_partition_fetch_bytes": 8}
    )
    assert grouped["isolation_level"] == "read_committed" and grouped["enable_auto_commit"] is False
    assert grouped["session_timeout_ms"] == kafka_io.SESSION_TIMEOUT_MS
    assert grouped["group_id"] == "pw-x-loader" and grouped["client_id"] == "pw-x-loader"
    assert grouped["max_partition_fetch_bytes"] == 8  # the caller's option wins
    assert grouped["security_protocol"] == "PLAINTEXT" and "sasl_plain_password" not in grouped
    assert "ssl_context" not in grouped
    alone = kafka_io._consumer_options(s, "tail", None, {})
    assert alone["group_id"] is None and "session_timeout_ms" not in alone
    produced = kafka_io._producer_options(s, "alerts", {"linger_ms": 0})
    assert (produced["acks"], produced["enable_idempotence"], produced["linger_ms"]) == (
        "all",
        True,
        0,
    )


def test_security_settings_reach_every_library(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_pem())
    s = Settings.from_env(
        {**SASL, "PW_KAFKA_SSL_CAFILE": str(ca), "PW_KAFKA_BROKER": "k1:9093,k2:9093"}
    )
    options = kafka_io._producer_options(s, "p", {})
    assert options["security_protocol"] == "SASL_SSL"
    assert (
        options["sasl_mechanism"],
        options["sasl_plain_username"],
        options["sasl_plain_password"],
    ) == ("SCRAM-SHA-256", "svc", "s3cret-value")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1  # the CA of the setting, not the system's store
    faust_options = kafka_io.faust_options(s)
    credentials = faust_options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (
        credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-256"
    )
    assert (credentials.username, credentials.password) == ("svc", "s3cret-value")
    assert faust_options["broker"] == "kafka://k1:9093;kafka://k2:9093"
    assert faust_options["broker_session_timeout"] * 1000 == kafka_io.SESSION_TIMEOUT_MS
    # without TLS: SASL_PLAINTEXT, and no context anywhere
    plain = Settings.from_env({**SASL, "PW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert "ssl_context" not in kafka_io.connection(plain)
    assert kafka_io.faust_options(plain)["broker_credentials"].protocol.value == "SASL_PLAINTEXT"
    tls_only = Settings.from_env({"PW_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert isinstance(kafka_io.faust_options(tls_only)["broker_credentials"], faust.SSLCredentials)
    assert "sasl_mechanism" not in kafka_io.connection(tls_only)
    assert kafka_io.faust_options(Settings.from_env({}))["broker_credentials"] is None


def _self_signed_pem() -> str:
    """A throwaway CA certificate, made with `cryptography` (a dependency)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_tls_files_that_cannot_be_read_name_their_setting(tmp_path: Path) -> None:
    missing = Settings.from_env(
        {"PW_KAFKA_SECURITY_PROTOCOL": "SSL", "PW_KAFKA_SSL_CAFILE": str(tmp_path / "nope.pem")}
    )
    with pytest.raises(
        kafka_io.KafkaAccessError, match=r"PW_KAFKA_SSL_CAFILE=.*nope\.pem.*no such file"
    ):
        kafka_io.connection(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    broken = Settings.from_env(
        {"PW_KAFKA_SECURITY_PROTOCOL": "SSL", "PW_KAFKA_SSL_CAFILE": str(garbage)}
    )
    with pytest.raises(kafka_io.KafkaAccessError, match="PW_KAFKA_SSL_CAFILE"):
        kafka_io.ssl_context(broken)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"PW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "PW_KAFKA_SASL_USERNAME='': required with PW_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        ({**SASL, "PW_KAFKA_SASL_PASSWORD": ""}, "PW_KAFKA_SASL_PASSWORD=***: required"),
        (
            {"PW_KAFKA_SASL_PASSWORD": "pw"},
            "PW_KAFKA_SASL_PASSWORD=***: is set, but PW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL",
        ),
        (
            {"PW_KAFKA_SSL_CAFILE": "/ca.pem"},
            "PW_KAFKA_SSL_CAFILE='/ca.pem': is set, but PW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS",
        ),
        (
            {
                **SASL,
                "PW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "PW_KAFKA_SSL_CAFILE": "/ca.pem",
            },
            "does not use TLS",
        ),
        (
            {"PW_KAFKA_SECURITY_PROTOCOL": "SSL", "PW_KAFKA_SSL_CERTFILE": "/c.pem"},
            "PW_KAFKA_SSL_KEYFILE='': goes with PW_KAFKA_SSL_CERTFILE",
        ),
        (
            {"PW_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "PW_KAFKA_SECURITY_PROTOCOL='TLS': input should be",
        ),
        ({**SASL, "PW_KAFKA_SASL_MECHANISM": "GSSAPI"}, "PW_KAFKA_SASL_MECHANISM='GSSAPI'"),
    ],
)
def test_inconsistent_security_settings_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env(env)
    assert says in str(caught.value)
    assert "s3cret-value" not in str(caught.value) and "'pw'" not in str(caught.value)


def test_security_settings_are_case_insensitive_and_the_password_is_secret() -> None:
    s = Settings.from_env(
        {
            **SASL,
            "PW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "PW_KAFKA_SASL_MECHANISM": "scram-sha-512",
        }
    )
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert s.kafka_tls and s.kafka_sasl
    assert "s3cret-value" not in repr(s) and s.redacted()["kafka_sasl_password"] == "***"


def test_check_access_explains_a_closed_port() -> None:
    from partnerwatch.local_worker import free_port

    s = Settings.from_env({"PW_KAFKA_BROKER": f"127.0.0.1:{free_port()}"})
    with pytest.raises(kafka_io.KafkaAccessError, match="nothing listens there"):
        kafka_io.check_access(s, timeout=5)


def test_the_parked_topic_is_created_by_the_one_topic_function() -> None:
    """No module but the factory creates topics (Faust creates its own agents' and changelogs')."""
    creators = sorted(
        str(path.relative_to(REPO_ROOT))
        for package in PRODUCT
        for path in (REPO_ROOT / package).rglob("*.py")
        if "create_topics(" in path.read_text()
    )
    assert creators == ["sinks/kafka_io.py"]


class _RecordingAdmin:
    """Stands in for the broker's admin API: remembers the topics it is asked to create; raises
    each of `failures` in turn first (one per call of list_topics)."""

    def __init__(self, existing: set[str], failures: tuple[Exception, ...] = ()) -> None:
        self.existing = existing
        self.created: list[Any] = []
        self.failures = list(failures)
        self.calls = 0

    def list_topics(self) -> list[str]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return sorted(self.existing)

    def create_topics(self, topics: list[Any]) -> None:
        self.created.extend(topics)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("environ", "replicas", "insync"),
    [
        ({}, 1, None),
        ({"PW_TOPIC_REPLICATION": "3", "PW_TOPIC_MIN_INSYNC": "2"}, 3, "2"),
        ({"PW_TOPIC_REPLICATION": "3"}, 3, None),
    ],
)
def test_topics_are_created_with_the_replication_settings(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], replicas: int, insync: str | None
) -> None:
    s = Settings.from_env(environ)
    fake = _RecordingAdmin(existing={s.alerts_topic})
    monkeypatch.setattr(kafka_io, "admin", lambda settings, **_: fake)
    created = kafka_io.ensure_topics(s, [f"{s.topic_prefix}parked"])
    names = [t.name for t in fake.created]
    assert created == names
    assert s.alerts_topic not in names  # an existing topic is left as it is
    assert {s.actions_topic, s.ledger_topic, f"{s.topic_prefix}parked"} <= set(names)
    assert {t.replication_factor for t in fake.created} == {replicas}
    for topic in fake.created:
        configs = dict(topic.topic_configs)
        assert configs.get("min.insync.replicas") == insync, topic.name
    ledger = next(t for t in fake.created if t.name == s.ledger_topic)
    assert dict(ledger.topic_configs)["cleanup.policy"] == "compact"  # kept beside the new one


def test_min_insync_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValueError, match=r"PW_TOPIC_MIN_INSYNC='3'.*PW_TOPIC_REPLICATION=2"):
        Settings.from_env({"PW_TOPIC_REPLICATION": "2", "PW_TOPIC_MIN_INSYNC": "3"})


def test_topics_are_asked_for_again_while_a_broker_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker of a cluster that just died is still in the metadata: a request sent to it fails
    with a connection error, retried with a new client; other errors are raised at once."""
    from kafka.errors import KafkaConnectionError, NodeNotReadyError, TopicAuthorizationFailedError

    s = Settings.from_env({})
    clock = _Clock()
    monkeypatch.setattr(kafka_io, "time", clock)
    flaky = _RecordingAdmin(set(), (KafkaConnectionError("111 ECONNREFUSED"), NodeNotReadyError(2)))
    monkeypatch.setattr(kafka_io, "admin", lambda settings, **_: flaky)
    assert s.actions_topic in kafka_io.ensure_topics(s)
    assert flaky.calls == 3

    refused = _RecordingAdmin(set(), (TopicAuthorizationFailedError(),))
    monkeypatch.setattr(kafka_io, "admin", lambda settings, **_: refused)
    with pytest.raises(TopicAuthorizationFailedError):
        kafka_io.ensure_topics(s)
    assert refused.calls == 1

    down = _RecordingAdmin(set(), tuple(KafkaConnectionError("down") for _ in range(1000)))
    monkeypatch.setattr(kafka_io, "admin", lambda settings, **_: down)
    began = clock.now
    with pytest.raises(KafkaConnectionError):
        kafka_io.ensure_topics(s)
    assert kafka_io.TOPICS_RETRY_SECONDS <= clock.now - began <= kafka_io.TOPICS_RETRY_SECONDS + 1
    assert 1 < down.calls < 1000


class _Clock:
    """monotonic() and sleep() of a clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_kafka_python_checksums_records_in_c() -> None:
    """kafka-python (the `partnerwatch ingest` producer, the command line's consumers) uses the
    C CRC-32C of the `crc32c` package (its `[crc32c]` extra); without it every record written or
    read is checksummed in pure Python, about 100 µs of CPU each (docs/performance.md)."""
    from kafka.record import util

    assert util.crc32c_c is not None, "install kafka-python[crc32c] (pyproject.toml)"
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
