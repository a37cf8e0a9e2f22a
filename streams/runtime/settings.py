"""The one frozen settings object, read from the environment with the contract's names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.runtime.durations import parse_duration
from streams.runtime.errors import ConfigError
from streams.runtime.kafka_settings import (
    SECRET_VARIABLES,
    KafkaSettings,
    lowered,
    read_secret_files,
)
from streams.runtime.windows import WindowSpec, parse_windows

__all__ = ["PRODUCER_MAX_REQUEST_BYTES", "SECRET_VARIABLES", "Settings", "load_settings"]

# The producer's largest request (a batch of one partition must fit in one).
PRODUCER_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _windows(value: Any) -> Any:
    return parse_windows(value) if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class Settings(KafkaSettings):
    """Every setting of a worker. Field aliases are the environment variable names; the
    connection and topic settings come first (`KafkaSettings`)."""

    # Processing
    windows: Annotated[tuple[WindowSpec, ...], BeforeValidator(_windows)] = Field(
        parse_windows("tumbling:60s,hopping:300s/60s"),
        alias="INSIGHTS_WINDOWS",
        description="window specs, comma separated; a hopping step must divide its size",
    )
    grace_s: Seconds = Field(
        30.0, alias="INSIGHTS_GRACE", description="allowed lateness after a window's end"
    )
    idle_timeout_s: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = Field(
        60.0,
        alias="INSIGHTS_IDLE_TIMEOUT",
        description=(
            "an input partition caught up and silent this long stops holding event time "
            "back; when all are, windows close by wall clock"
        ),
    )
    max_future_s: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = Field(
        600.0,
        alias="INSIGHTS_MAX_FUTURE",
        description=(
            "an observed_at further ahead of the worker's clock is `invalid` and moves no watermark"
        ),
    )
    emit: Annotated[Literal["changes", "final", "both"], BeforeValidator(lowered)] = Field(
        "both", alias="INSIGHTS_EMIT", description="`changes`, `final` or `both`"
    )
    flush_interval_s: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = Field(
        1.0,
        alias="INSIGHTS_FLUSH_INTERVAL",
        description=(
            "how often coalesced window updates are emitted (lower: less latency, more "
            "output records and changelog writes)"
        ),
    )
    persist_interval_s: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=300)] | None = (
        Field(
            None,
            alias="INSIGHTS_PERSIST_INTERVAL",
            description=(
                "at_least_once only: how often state is written to the changelog and input "
                "offsets become committable (default: every flush); longer means fewer "
                "changelog writes and, after a crash, more input replayed and outputs repeated"
            ),
        )
    )
    aggregates: Annotated[Literal["full", "basic"], BeforeValidator(lowered)] = Field(
        "full",
        alias="INSIGHTS_AGGREGATES",
        description=(
            "`full`: every figure of an insight; `basic`: only count, sum, mean, min, max, "
            "first_at and last_at (the others null; no observer consensus), for less CPU "
            "and memory per key"
        ),
    )
    dedup_ttl_s: Seconds = Field(
        600.0,
        alias="INSIGHTS_DEDUP_TTL",
        description="how long an `event_id` is remembered (`0s`: no dedup)",
    )
    dedup_max_ids: int = Field(
        250_000,
        ge=1_000,
        le=100_000_000,
        alias="INSIGHTS_DEDUP_MAX_IDS",
        description=(
            "event ids remembered per partition at most; beyond it the oldest are forgotten "
            "before INSIGHTS_DEDUP_TTL (counted in `insights_dedup_evicted_total`)"
        ),
    )
    max_observers_per_window: int = Field(
        100,
        ge=2,
        le=1_000,
        alias="INSIGHTS_MAX_OBSERVERS_PER_WINDOW",
        description=(
            "observers whose figures a window keeps for consensus; the rest are still "
            "counted in `count` and `observers` (estimated), and the consensus record says "
            "`observers_truncated`"
        ),
    )
    max_keys_per_partition: int = Field(
        25_000,
        ge=100,
        le=10_000_000,
        alias="INSIGHTS_MAX_KEYS_PER_PARTITION",
        description=(
            "key budget: (scope, subject or group, metric) keys with open windows per keyed "
            "partition; an observation for a new key beyond it is an `over_capacity` dead "
            "letter (memory per worker ~ 150 MB + owned partitions x budget x 4 KB)"
        ),
    )
    history_ttl_s: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = Field(
        7 * 86_400.0,
        alias="INSIGHTS_HISTORY_TTL",
        description=(
            "an anomaly baseline or observer standing not updated for this long (event "
            "time) is forgotten"
        ),
    )
    processing_guarantee: Annotated[
        Literal["at_least_once", "exactly_once"], BeforeValidator(lowered)
    ] = Field(
        "at_least_once",
        alias="INSIGHTS_PROCESSING_GUARANTEE",
        description="or `exactly_once` (Kafka transactions; not on the embedded broker)",
    )
    store: str = Field(
        "memory://",
        alias="INSIGHTS_STORE",
        description=(
            "or `rocksdb://` for state larger than memory "
            "(RocksDB via rocksdict, under `INSIGHTS_DATA_DIR`)"
        ),
    )
    standby_replicas: int = Field(
        0,
        ge=0,
        le=8,
        alias="INSIGHTS_STANDBY_REPLICAS",
        description="standby table replicas for faster takeover",
    )
    data_dir: Path = Field(
        Path("/tmp/observer-insights"),  # noqa: S108
        alias="INSIGHTS_DATA_DIR",
        description="local state (RocksDB, Faust's data dir)",
    )
    session_timeout_s: Annotated[float, BeforeValidator(_duration), Field(ge=6, le=300)] = Field(
        10.0,
        alias="INSIGHTS_SESSION_TIMEOUT",
        description="consumer-group session timeout (how fast a dead replica is noticed)",
    )

    fetch_max_wait_s: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=10)] = Field(
        0.1,
        alias="INSIGHTS_FETCH_MAX_WAIT",
        description=(
            "longest a fetch waits at the broker for data (`fetch.max.wait.ms`; Faust's own "
            "1.5s added up to seconds of latency)"
        ),
    )

    producer_linger_s: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=1)] = Field(
        0.005,
        alias="INSIGHTS_PRODUCER_LINGER",
        description=(
            "how long the producer lets a batch fill before sending it (`linger.ms`, as "
            "librdkafka's default; Faust's 0 sent many small requests)"
        ),
    )
    producer_batch_bytes: int = Field(
        1_048_576,
        ge=16_384,
        le=PRODUCER_MAX_REQUEST_BYTES,
        alias="INSIGHTS_PRODUCER_BATCH_SIZE",
        description="largest batch of records per partition in one produce request, in bytes",
    )

    shutdown_timeout_s: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=600)] = Field(
        20.0,
        alias="INSIGHTS_SHUTDOWN_TIMEOUT",
        description="on SIGTERM, in-flight work must finish within this, else exit 1",
    )

    # Anomalies and observers
    anomaly_detection: bool = Field(
        True,
        alias="INSIGHTS_ANOMALY_DETECTION",
        description="`false`: no baselines are kept and nothing goes to the anomaly topic",
    )
    anomaly_alpha: float = Field(
        0.1,
        gt=0,
        le=1,
        alias="INSIGHTS_ANOMALY_ALPHA",
        description="smoothing of the exponentially weighted baseline (weight of a new value)",
    )
    anomaly_warmup: int = Field(
        30,
        ge=2,
        alias="INSIGHTS_ANOMALY_WARMUP",
        description="values a (subject, metric) baseline needs before anything is an anomaly",
    )
    anomaly_warning_z: float = Field(
        3.0, gt=0, alias="INSIGHTS_ANOMALY_WARNING_Z", description="|z| of a `warning` anomaly"
    )
    anomaly_critical_z: float = Field(
        5.0, gt=0, alias="INSIGHTS_ANOMALY_CRITICAL_Z", description="|z| of a `critical` anomaly"
    )
    anomaly_cooldown_s: Seconds = Field(
        60.0,
        alias="INSIGHTS_ANOMALY_COOLDOWN",
        description=(
            "after an anomaly, the same (subject, metric) reports none of equal or lower "
            "severity for this long (event time)"
        ),
    )
    outlier_threshold: float = Field(
        3.5,
        gt=0,
        alias="INSIGHTS_OUTLIER_THRESHOLD",
        description="robust |deviation| from consensus that makes an observer an outlier",
    )
    drift_alpha: float = Field(
        0.2,
        gt=0,
        le=1,
        alias="INSIGHTS_DRIFT_ALPHA",
        description="smoothing of an observer's drift score (weight of the newest window)",
    )
    stale_windows: int = Field(
        3,
        ge=1,
        alias="INSIGHTS_STALE_WINDOWS",
        description="an observer missing from this many scored windows is reported stale",
    )

    # Operations
    log_level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(lowered)
    ] = Field(
        "info",
        alias="INSIGHTS_LOG_LEVEL",
        description="`debug`, `info`, `warning`, `error` or `critical`",
    )
    log_format: Annotated[Literal["json", "console"], BeforeValidator(lowered)] = Field(
        "json",
        alias="INSIGHTS_LOG_FORMAT",
        description="`json` (one event a line), or `console` for humans",
    )
    web_host: str = Field(
        "0.0.0.0",  # noqa: S104  (containers)
        alias="INSIGHTS_WEB_HOST",
        description="bind address of the web and metrics servers",
    )
    web_port: Port = Field(
        6066, alias="INSIGHTS_WEB_PORT", description="`/healthz`, `/readyz` (and the query API)"
    )
    web_advertised_host: str | None = Field(
        None,
        alias="INSIGHTS_WEB_ADVERTISED_HOST",
        description=(
            "host other replicas use to reach this web port (query routing); default: the "
            "bind address, or this machine's host name when binding every interface"
        ),
    )
    metrics_port: Port = Field(
        9108, alias="INSIGHTS_METRICS_PORT", description="Prometheus `/metrics`, a port of its own"
    )

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("memory://", "rocksdb://")):
            msg = "must be memory:// or rocksdb://"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                msg = "KAFKA_SASL_MECHANISM is required with a SASL security protocol"
                raise ValueError(msg)
            if self.sasl_username is None or self.sasl_password is None:
                msg = "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with SASL"
                raise ValueError(msg)
        if self.anomaly_critical_z < self.anomaly_warning_z:
            msg = "INSIGHTS_ANOMALY_CRITICAL_Z must be at least INSIGHTS_ANOMALY_WARNING_Z"
            raise ValueError(msg)
        if self.persist_interval_s is not None:
            if self.processing_guarantee == "exactly_once":
                msg = (
                    "INSIGHTS_PERSIST_INTERVAL works only with at_least_once (exactly_once "
                    "persists every flush, in the flush's transaction)"
                )
                raise ValueError(msg)
            if self.persist_interval_s < self.flush_interval_s:
                msg = "INSIGHTS_PERSIST_INTERVAL must be at least INSIGHTS_FLUSH_INTERVAL"
                raise ValueError(msg)
        if self.web_port and self.web_port == self.metrics_port:
            msg = "INSIGHTS_METRICS_PORT must differ from INSIGHTS_WEB_PORT"
            raise ValueError(msg)
        return self

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and the worker brings its own."""
        return not self.bootstrap_servers

    @property
    def scores_topic(self) -> str:
        """Internal topic of per-window observer standings, keyed by observer."""
        return f"{self.app_id}-observer-scores"

    @property
    def keyed_topic(self) -> str:
        """Internal topic of valid observations keyed (and partitioned) by subject."""
        return f"{self.app_id}-observations-by-subject"


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:
        return message
    name = str(err["loc"][0])
    if name in SECRET_VARIABLES:
        return f"{name}: {message}"
    return f"{name}={err.get('input')!r}: {message}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: the process environment).

    Raises ConfigError whose message is one line naming the bad variable.
    """
    env = dict(os.environ if environ is None else environ)
    env.update(read_secret_files(env))
    known = {field.alias or name for name, field in Settings.model_fields.items()}
    values = {key: value for key, value in env.items() if key in known and value != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
