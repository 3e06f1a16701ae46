"""The one Kafka client factory: every producer, consumer and admin client is built here.

Per client library in use:
- aiokafka (the worker's own clients, the alert feed): `aio_consumer`, `aio_producer`, `aio_admin`;
- kafka-python (the command line, the simulator, tests): `consumer`, `producer`, `admin`;
- Faust (the worker's agents and tables): `faust_options`, spread into `faust.App` by streams/app.py.

Each gets the same connection settings (`Settings.kafka_*`: bootstrap servers, security protocol,
SASL mechanism and credentials, one TLS context) and the same house defaults: consumers read
committed records only, commit by hand and start at the earliest offset; a group member's session
expires in `SESSION_TIMEOUT_MS`; producers wait for all replicas and are idempotent. A caller
passes only what differs (`**options` win). Topics are created here too (`ensure_topics`).

A broker that cannot be reached, or that refuses the TLS handshake or the credentials, raises
`KafkaAccessError` with the cause and the setting to check (`check_access`; the libraries
themselves only log the cause and report "unable to bootstrap").
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from pipeline.config import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

log = structlog.get_logger("sinks.kafka_io")

#: A killed member's group membership expires this fast, so a restarted process resumes in seconds.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 2_000
#: Largest request a producer sends and largest fetch per partition (the broker's message.max.bytes).
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024

_CONSUMER = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "isolation_level": "read_committed",
    "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
}
_GROUP = {"session_timeout_ms": SESSION_TIMEOUT_MS, "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS}
_PRODUCER = {"acks": "all", "enable_idempotence": True, "max_request_size": MAX_REQUEST_BYTES}


class KafkaAccessError(RuntimeError):
    """The brokers cannot be reached or refuse this client; the message names the setting to check."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every client (None without TLS): the CA of PW_KAFKA_SSL_CAFILE (else the
    system's trust store), the client certificate when set; host names are always checked."""
    if not settings.kafka_tls:
        return None
    for variable, path in (
        ("PW_KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile),
        ("PW_KAFKA_SSL_CERTFILE", settings.kafka_ssl_certfile),
        ("PW_KAFKA_SSL_KEYFILE", settings.kafka_ssl_keyfile),
    ):
        if path and not Path(path).is_file():
            raise KafkaAccessError(f"{variable}={path!r}: no such file")
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaAccessError(
            f"the Kafka TLS files (PW_KAFKA_SSL_CAFILE, PW_KAFKA_SSL_CERTFILE, PW_KAFKA_SSL_KEYFILE) cannot be loaded: {exc}"
        ) from None
    return context


def connection(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security options, as aiokafka and kafka-python both name them."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_broker,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_tls:
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_sasl:
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def _consumer_options(
    settings: Settings, role: str, group: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    return {
        **connection(settings),
        "client_id": settings.client_id(role),
        "group_id": group,
        **_CONSUMER,
        **(_GROUP if group else {}),
        **options,
    }


def _producer_options(settings: Settings, role: str, options: dict[str, Any]) -> dict[str, Any]:
    return {**connection(settings), "client_id": settings.client_id(role), **_PRODUCER, **options}


# aiokafka
def aio_consumer(
    settings: Settings, *topics: str, role: str, group: str | None = None, **options: Any
) -> AIOKafkaConsumer:
    """An aiokafka consumer (not started): in `group` when given, else assigned by hand."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **_consumer_options(settings, role, group, options))


def aio_producer(settings: Settings, *, role: str, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer (not started): acks from all replicas, idempotent."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**_producer_options(settings, role, options))


def aio_batch_producer(
    settings: Settings, *, role: str, transactional_id: str | None = None
) -> AIOKafkaProducer:
    """An aiokafka producer (not started) for ready-built record batches (`create_batch`,
    `send_batch`), as the ingest service writes its ledger: each batch sent at once (no linger),
    up to 1 MiB; transactional when `transactional_id` is given."""
    options: dict[str, Any] = {"linger_ms": 0, "max_batch_size": 1024 * 1024}
    if transactional_id is not None:
        options["transactional_id"] = transactional_id
    return aio_producer(settings, role=role, **options)


def aio_admin(settings: Settings, *, role: str) -> AIOKafkaAdminClient:
    """An aiokafka admin client (not started)."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**connection(settings), client_id=settings.client_id(role))


# kafka-python
def consumer(
    settings: Settings, *topics: str, role: str, group: str | None = None, **options: Any
) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, **_consumer_options(settings, role, group, options))


def producer(settings: Settings, *, role: str = "producer", **options: Any) -> KafkaProducer:
    """A kafka-python producer: acks from all replicas, idempotent (`send_events` adds batching)."""
    from kafka import KafkaProducer

    return KafkaProducer(**_producer_options(settings, role, options))


def admin(settings: Settings, *, role: str = "admin") -> KafkaAdminClient:
    """A kafka-python admin client. A broker that cannot be used raises `KafkaAccessError` at
    once, with the cause (kafka-python would retry its bootstrap for half a minute, then only
    say "unable to bootstrap"): every command and process that needs Kafka starts with one."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    check_access(settings)
    try:
        return KafkaAdminClient(**connection(settings), client_id=settings.client_id(role))
    except KafkaError as exc:
        raise KafkaAccessError(
            f"Kafka at {settings.kafka_broker}: {type(exc).__name__}: {exc}"
        ) from exc


# Faust
def faust_options(settings: Settings) -> dict[str, Any]:
    """The broker and client options of `faust.App` (the worker's agents, tables, producers)."""
    import faust

    context = ssl_context(settings)
    credentials: Any = None
    if settings.kafka_sasl:
        # Faust picks SASL_SSL when given a TLS context, SASL_PLAINTEXT otherwise.
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {
        "broker": ";".join(
            f"kafka://{server.strip()}" for server in settings.kafka_broker.split(",")
        ),
        "broker_credentials": credentials,
        "broker_client_id": settings.client_id("worker"),
        "broker_session_timeout": SESSION_TIMEOUT_MS / 1000,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_MS / 1000,
        "consumer_auto_offset_reset": _CONSUMER["auto_offset_reset"],
        "producer_acks": -1,  # all replicas
        "producer_max_request_size": MAX_REQUEST_BYTES,
        "consumer_max_fetch_size": MAX_PARTITION_FETCH_BYTES,
    }


# Access check
def check_access(settings: Settings, timeout: float = 10.0) -> None:
    """Connect to each bootstrap server as the clients do (TLS, then SASL); return when one
    accepts, else raise `KafkaAccessError` with the cause and the setting to check."""
    from aiokafka.conn import create_conn

    options = connection(settings)
    options.pop("bootstrap_servers")

    async def probe(host: str, port: int) -> None:
        conn = await create_conn(
            host,
            port,
            client_id=settings.client_id("access-check"),
            request_timeout_ms=int(timeout * 1000),
            **options,
        )
        conn.close()

    def run(host: str, port: int) -> None:
        asyncio.run(asyncio.wait_for(probe(host, port), timeout))

    causes = []
    for server in settings.kafka_broker.split(","):
        host, _, port = server.strip().rpartition(":")
        address = (host, int(port)) if host else (port, 9092)
        try:
            if _in_event_loop():  # asyncio.run needs a thread without a running loop
                with ThreadPoolExecutor(1) as pool:
                    pool.submit(run, *address).result()
            else:
                run(*address)
            return
        except Exception as exc:  # every failure is explained below
            causes.append(explain(settings, server.strip(), exc))
    raise KafkaAccessError("; ".join(causes))


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def explain(settings: Settings, server: str, exc: BaseException) -> str:
    """A failed connection, in words, with the settings that decide it."""
    text = f"{type(exc).__name__}: {exc}"
    where = f"Kafka at {server} (PW_KAFKA_BROKER, PW_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = (
            f"is not signed by the CA in PW_KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile!r}"
            if settings.kafka_ssl_cafile
            else "is not trusted by the system's trust store: set PW_KAFKA_SSL_CAFILE to the CA that signed it"
        )
        return f"{where}: the broker's TLS certificate {hint} ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: the TLS handshake failed ({text}); does that listener speak TLS?"
    if "Authentication failed" in text or "SaslAuthenticationFailed" in text:
        return (
            f"{where}: SASL {settings.kafka_sasl_mechanism} authentication failed for user "
            f"{settings.kafka_sasl_username!r}: check PW_KAFKA_SASL_USERNAME and PW_KAFKA_SASL_PASSWORD"
        )
    if "UnsupportedSaslMechanism" in text or "mechanism" in text.lower():
        return f"{where}: the broker does not accept PW_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} ({text})"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: nothing listens there ({exc}); is the broker running?"
    if "closed" in text:
        return f"{where}: the broker closed the connection; does its listener use {settings.kafka_security_protocol}? ({text})"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return f"{where}: no answer ({text}); is the broker running?"
    return f"{where}: {text}"


# Topics
#: How long `ensure_topics` asks again after a retriable error. On a cluster, a broker that has
#: just died stays in the metadata until the controller fences it (broker.session.timeout.ms,
#: 9 s by default), and kafka-python's admin client sends a request to a node chosen at random:
#: one sent to the dead broker fails with a connection error while the others would answer.
TOPICS_RETRY_SECONDS = 30.0


def ensure_topics(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """Create the pipeline topics (and `extra` ones, e.g. the feed's parked topic) with the
    configured partition count, replication factor and min.insync.replicas when missing; return
    those created (an existing topic is left as it is). The one place topics are
    created outside Faust (which creates its agents' topics and its tables' changelogs).
    A retriable Kafka error (a broker down, a request timed out) is retried with a new client
    for `TOPICS_RETRY_SECONDS`; any other error is raised at once."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + TOPICS_RETRY_SECONDS
    while True:
        try:
            return _ensure_topics(settings, extra)
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() >= deadline:
                raise
            log.warning("kafka.topics_retry", error=f"{type(exc).__name__}: {exc}")
            time.sleep(0.5)


def _ensure_topics(settings: Settings, extra: Iterable[str]) -> list[str]:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin(settings)
    try:
        wanted = [*settings.pipeline_topics, *settings.state_topics, *extra]
        existing = set(client.list_topics())
        window_ms = str(max(1, round(settings.dedup_window_days * 86_400_000)))
        configs = {
            # The ledger is the sequencing state (streams/ingest.py): compacted by account once
            # older than the dedup window, so every account's chain head is kept forever.
            settings.ledger_topic: {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": window_ms,
            },
            # The provider stage's state (streams/provider_stage.py): the latest record per key.
            settings.provider_state_topic: {
                "cleanup.policy": "compact",
                "max.message.bytes": str(8 * 1024 * 1024),
            },
            # Signatures of accepted signed HTTP requests (streams/web/signatures.py): needed for
            # one replay window; kept a day (or two windows), whichever is longer.
            settings.signatures_topic: {
                "cleanup.policy": "delete",
                "retention.ms": str(max(86_400, 2 * settings.ingest_hmac_window) * 1000),
            },
        }
        # The ingest service's state (streams/ingest.py): the latest record per key is the state.
        configs.update({topic: {"cleanup.policy": "compact"} for topic in settings.state_topics})
        # Ledger snapshots (pipeline/ledger_snapshot.py) are rewritten every PW_SNAPSHOT_SECONDS
        # and at each handover, and read whole at every partition load: roll and compact segments
        # often, so a load reads about the latest snapshot, not every one of the last days.
        configs[settings.ledger_snapshot_topic] = {
            "cleanup.policy": "compact",
            "segment.ms": str(10 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.1",
            "delete.retention.ms": str(60 * 60 * 1000),
        }
        # On a cluster: each topic's replicas (PW_TOPIC_REPLICATION), and how many of them must
        # have a write before it is acknowledged (producers ask for acks from all in-sync replicas).
        insync = (
            {"min.insync.replicas": str(settings.topic_min_insync)}
            if settings.topic_min_insync
            else {}
        )
        # one partition: every worker sees every claim in one order, so the first claim wins; the
        # provider stage reads its whole state topic at once when it takes over
        partitions = {settings.signatures_topic: 1, settings.provider_state_topic: 1}
        created = []
        for topic in (t for t in wanted if t not in existing):
            new = NewTopic(
                topic,
                num_partitions=partitions.get(topic, settings.topic_partitions),
                replication_factor=settings.topic_replication,
                topic_configs={**configs.get(topic, {}), **insync},
            )
            try:
                client.create_topics([new])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        client.close()


# Producing from outside the worker (simulator, file replay, tests)
def action_key(event: dict[str, Any]) -> bytes:
    """Ingest messages are keyed by account, so each account's chain lives on one partition."""
    return str(event.get("account_id", "")).encode()


def send_events(
    settings: Settings, events: Iterable[dict[str, Any] | bytes], topic: str | None = None
) -> Iterator[int]:
    """Produce events (dicts, or raw message bytes) to pw.actions; yield a running count.

    Raw bytes are sent as they are (that is how bad input reaches the dead-letter topic); their
    key is the `account_id` when they parse, else empty.
    """
    target = topic or settings.actions_topic
    prod = producer(settings, linger_ms=5, batch_size=256 * 1024, compression_type=None)
    try:
        for sent, item in enumerate(events, start=1):
            if isinstance(item, bytes):
                value = item
                try:
                    doc = orjson.loads(item)
                    key = action_key(doc) if isinstance(doc, dict) else b""
                except orjson.JSONDecodeError:
                    key = b""
            else:
                value, key = orjson.dumps(item), action_key(item)
            prod.send(target, key=key, value=value)
            yield sent
        prod.flush()
    finally:
        prod.close()
