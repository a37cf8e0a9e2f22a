"""The worker's Kafka connection and topic settings: the first part of `Settings`
(`streams/runtime/settings.py`), and the secrets that may come from files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.runtime.errors import ConfigError

__all__ = ["SECRET_VARIABLES", "KafkaSettings", "lowered", "read_secret_files"]

# Secrets: each may instead be given as a file path in `<NAME>_FILE`.
SECRET_VARIABLES: Final = (
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def lowered(value: Any) -> Any:
    """A string lower-cased (settings that take any case); anything else as it is."""
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


TopicName = Annotated[str, Field(pattern=_TOPIC_NAME.pattern)]


class KafkaSettings(BaseSettings):
    """Where the worker connects, as whom, and the topics it reads and writes. Field
    aliases are the environment variable names."""

    # enable_decoding=False: complex fields (INSIGHTS_WINDOWS) are parsed by our own
    # validators from the raw string, never as JSON.
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, enable_decoding=False
    )

    # Kafka connection
    bootstrap_servers: str | None = Field(
        None,
        alias="KAFKA_BOOTSTRAP_SERVERS",
        description=(
            "broker list; unset: the worker starts the embedded broker and says so in its log"
        ),
    )
    security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], BeforeValidator(_upper)
    ] = Field(
        "PLAINTEXT",
        alias="KAFKA_SECURITY_PROTOCOL",
        description="also `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`",
    )
    sasl_mechanism: Annotated[
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None, BeforeValidator(_upper)
    ] = Field(
        None,
        alias="KAFKA_SASL_MECHANISM",
        description="`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`; required with `SASL_*`",
    )
    sasl_username: SecretStr | None = Field(
        None, alias="KAFKA_SASL_USERNAME", description="SASL user name"
    )
    sasl_password: SecretStr | None = Field(
        None, alias="KAFKA_SASL_PASSWORD", description="SASL password"
    )
    ssl_cafile: Path | None = Field(
        None, alias="KAFKA_SSL_CAFILE", description="CA bundle that verifies the brokers (TLS)"
    )
    ssl_certfile: Path | None = Field(
        None,
        alias="KAFKA_SSL_CERTFILE",
        description="client certificate, for TLS client authentication",
    )
    ssl_keyfile: Path | None = Field(
        None, alias="KAFKA_SSL_KEYFILE", description="private key of the client certificate"
    )
    ssl_key_password: SecretStr | None = Field(
        None, alias="KAFKA_SSL_KEY_PASSWORD", description="password of the client private key"
    )

    # Application and topics
    app_id: TopicName = Field(
        "observer-insights", alias="INSIGHTS_APP_ID", description="Faust app id = consumer group id"
    )
    input_topic: TopicName = Field(
        "observations", alias="INSIGHTS_INPUT_TOPIC", description="raw input"
    )
    rolling_topic: TopicName = Field(
        "insights.rolling", alias="INSIGHTS_ROLLING_TOPIC", description="window aggregates"
    )
    anomaly_topic: TopicName = Field(
        "insights.anomalies", alias="INSIGHTS_ANOMALY_TOPIC", description="anomalies"
    )
    observer_topic: TopicName = Field(
        "insights.observers",
        alias="INSIGHTS_OBSERVER_TOPIC",
        description="observer consensus and drift",
    )
    deadletter_topic: TopicName = Field(
        "observations.deadletter",
        alias="INSIGHTS_DEADLETTER_TOPIC",
        description="everything that could not be used, with the reason",
    )
    topic_partitions: int = Field(
        12,
        ge=1,
        le=10_000,
        alias="INSIGHTS_TOPIC_PARTITIONS",
        description="partitions of the topics the app creates",
    )
    topic_replication: int = Field(
        1,
        ge=1,
        le=16,
        alias="INSIGHTS_TOPIC_REPLICATION",
        description="replication factor of the topics the app creates (use 3 in production)",
    )
    max_message_bytes: int = Field(
        65_536,
        ge=1_024,
        le=16 * 1024 * 1024,
        alias="INSIGHTS_MAX_MESSAGE_BYTES",
        description="larger input values are dead letters (`too_large`)",
    )
    compression_type: Annotated[
        Literal["none", "gzip", "snappy", "lz4", "zstd"], BeforeValidator(lowered)
    ] = Field(
        "zstd",
        alias="INSIGHTS_COMPRESSION_TYPE",
        description=(
            "codec of every batch the worker writes (outputs, keyed topic, changelog, dead "
            "letters; Kafka's `compression.type`): `none`, `gzip`, `snappy`, `lz4` or `zstd` "
            "(default `zstd`: about gzip's size for a fraction of its CPU, well below `lz4` "
            "and `snappy`; measured in `bench/results/compression.md`)"
        ),
    )


def read_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the secrets given as files (`<NAME>_FILE`), by variable name."""
    values: dict[str, str] = {}
    for name in SECRET_VARIABLES:
        file_var = f"{name}_FILE"
        path = environ.get(file_var)
        if not path:
            continue
        if environ.get(name):
            msg = f"{name} and {file_var} are both set: give one"
            raise ConfigError(msg)
        try:
            values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            msg = f"{file_var}: cannot read {path!r}: {exc.strerror}"
            raise ConfigError(msg) from exc
    return values
