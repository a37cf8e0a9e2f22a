"""The Faust app: built by `create_app(settings)`; `streams.app.app` builds it from the
environment on first access, so `faust -A streams.app` works and nothing reads settings at
import time."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import faust

from agents.deadletters import DeadLetterSink
from agents.ingest import attach_ingest
from agents.observers import attach_observers
from agents.rolling import attach_rolling
from streams import faust as integration
from streams.app.monitor import attach_monitor
from streams.faust.fetch import set_fetch_max_wait
from streams.runtime.kafka import ssl_context
from streams.runtime.metrics import Metrics
from streams.runtime.settings import PRODUCER_MAX_REQUEST_BYTES, Settings, load_settings
from streams.runtime.tables import declare_tables
from streams.runtime.topics import Topics, declare_topics
from streams.runtime.tracing import Tracing
from streams.web.health import Readiness, install_health_views
from streams.web.query import install_query_views

__all__ = ["Insights", "create_app"]


@dataclass(frozen=True)
class Insights:
    """A built app and the parts the worker, web views and tests reach for."""

    app: faust.App
    settings: Settings
    topics: Topics
    metrics: Metrics
    readiness: Readiness


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_username is not None  # guaranteed by Settings validation
        assert settings.sasl_password is not None
        return faust.SASLCredentials(
            username=settings.sasl_username.get_secret_value(),
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _advertised_host(settings: Settings) -> str:
    if settings.web_advertised_host:
        return settings.web_advertised_host
    if settings.web_host in ("0.0.0.0", "::"):  # noqa: S104  (every interface)
        return socket.gethostname()
    return settings.web_host


def faust_options(settings: Settings) -> dict[str, Any]:
    """The Faust configuration for these settings (all of it, at construction). The broker
    scheme and the table manager put the app on the classes of `streams.faust`."""
    if settings.bootstrap_servers is None:
        msg = "create_app needs KAFKA_BOOTSTRAP_SERVERS (the runner starts the embedded broker)"
        raise ValueError(msg)
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    return {
        "broker": [f"{integration.SCHEME}://{server}" for server in servers],
        "TableManager": integration.TableManager,
        "broker_credentials": _credentials(settings),
        "store": settings.store,
        "processing_guarantee": settings.processing_guarantee,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication,
        "topic_allow_declare": True,
        "table_standby_replicas": settings.standby_replicas,
        "datadir": str(settings.data_dir / settings.app_id),
        "autodiscover": False,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(1.0, settings.session_timeout_s / 5),
        "broker_rebalance_timeout": max(6.0, settings.session_timeout_s * 0.6),
        "producer_max_request_size": PRODUCER_MAX_REQUEST_BYTES,
        "producer_linger": settings.producer_linger_s,
        "producer_max_batch_size": settings.producer_batch_bytes,
        # Every producer Faust builds (transactional ones too) and every batch made with
        # `create_batch` (the batch lane) take it; aiokafka's None is Kafka's `none`.
        "producer_compression_type": (
            None if settings.compression_type == "none" else settings.compression_type
        ),
        # Faust would also read its settings from same-named variables (`WEB_PORT`,
        # `BROKER`, `PRODUCER_LINGER`...), over these: Kubernetes sets `<SERVICE>_PORT`
        # variables. The INSIGHTS_* settings are the only configuration.
        "env": {},
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": _advertised_host(settings),
    }


def create_app(
    settings: Settings,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    deadletter_max_bytes: int | None = None,
) -> Insights:
    """Build the Faust app, its topics and agents for `settings` (`deadletter_max_bytes`:
    the dead-letter topic's `max.message.bytes`, when known: letters are made to fit)."""
    metrics = metrics or Metrics()
    tracing = tracing or Tracing()
    integration.install()
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.app_id, **faust_options(settings))
    set_fetch_max_wait(app, round(settings.fetch_max_wait_s * 1000))
    topics = declare_topics(app, settings)
    sink = DeadLetterSink(app, settings.deadletter_topic, metrics, deadletter_max_bytes)
    tables = declare_tables(app, settings)
    ingest = attach_ingest(app, topics, settings, metrics, sink, tracing)
    engine = attach_rolling(app, topics, tables, settings, metrics, sink, tracing)
    ingest.local = engine  # co-partitioned records skip the keyed hop
    attach_observers(app, topics, tables, settings, metrics)
    attach_monitor(app, metrics, engine)

    install_query_views(app, engine, tables)
    readiness = Readiness(app, metrics)
    install_health_views(app, readiness)
    return Insights(app=app, settings=settings, topics=topics, metrics=metrics, readiness=readiness)


_built: Insights | None = None


def __getattr__(name: str) -> Any:
    """`streams.app.app`: the app for the current environment, built on first access."""
    global _built
    if name == "app":
        if _built is None:
            _built = create_app(load_settings())
        return _built.app
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
