"""Where Kafka is and how every client authenticates to it (`Settings`' first fields).

Settings (pipeline/config.py) inherits these, so the variables are `PW_KAFKA_*` like the others.
The one place that turns them into client options is sinks/kafka_io.py: every producer, consumer
and admin client of aiokafka and kafka-python, and Faust's own clients (streams/app.py), get the
same protocol, SASL credentials and TLS context from there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator
from pydantic_settings import BaseSettings

from pipeline.detection_config import setting

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseSettings):
    """The broker address and the clients' security settings."""

    kafka_broker: str = setting(
        "127.0.0.1:9092",
        "Kafka bootstrap servers, host:port[,host:port]; the local runner (`partnerwatch kafka`, infra/kafka/kafka.sh) listens on this port",
    )
    kafka_security_protocol: SecurityProtocol = setting(
        "PLAINTEXT", "how every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: SaslMechanism = setting(
        "SCRAM-SHA-512", "SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str = setting(
        "", "SASL user name (required by the SASL_* protocols)", validate_default=True
    )
    kafka_sasl_password: str = setting(
        "", "SASL password (required by the SASL_* protocols)", secret=True, validate_default=True
    )
    kafka_ssl_cafile: str = setting(
        "",
        "CA certificates (PEM) that signed the brokers' certificates (SSL, SASL_SSL; empty: the system's trust store)",
        validate_default=True,
    )
    kafka_ssl_certfile: str = setting(
        "",
        "client certificate (PEM) for brokers that require one (SSL, SASL_SSL)",
        validate_default=True,
    )
    kafka_ssl_keyfile: str = setting(
        "", "the client certificate's private key (PEM)", validate_default=True
    )

    @field_validator("kafka_broker")
    @classmethod
    def _brokers(cls, value: str) -> str:
        for item in value.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not item.strip() or (
                sep and (not host or not port.isdigit() or not 0 < int(port) < 65536)
            ):
                raise ValueError("must be host:port[,host:port]")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_sasl_username", "kafka_sasl_password")
    @classmethod
    def _sasl_complete(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("kafka_security_protocol", "")
        if protocol.startswith("SASL_") and not value:
            raise ValueError(f"required with PW_KAFKA_SECURITY_PROTOCOL={protocol}")
        if value and protocol and not protocol.startswith("SASL_"):
            raise ValueError(f"is set, but PW_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL")
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _tls_only(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("kafka_security_protocol", "")
        if value and protocol and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(f"is set, but PW_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS")
        if info.field_name == "kafka_ssl_keyfile" and bool(value) != bool(
            info.data.get("kafka_ssl_certfile")
        ):
            raise ValueError("goes with PW_KAFKA_SSL_CERTFILE: set both or neither")
        return value

    @property
    def kafka_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")
