"""Plain aiokafka clients for what Faust does not do for us: topic set-up, tail, produce."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Final

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.runtime.errors import ConfigError
from streams.runtime.settings import Settings
from streams.runtime.tables import TABLE_NAMES, changelog_topic
from streams.runtime.topics import DEADLETTER_MAX_BYTES

__all__ = [
    "check_access",
    "client_options",
    "ensure_topics",
    "ssl_context",
    "topic_plan",
]

logger = structlog.get_logger(__name__)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL, from KAFKA_SSL_* files; None for plaintext."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
    )
    if settings.ssl_certfile:
        password = settings.ssl_key_password
        context.load_cert_chain(
            str(settings.ssl_certfile),
            str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            password.get_secret_value() if password else None,
        )
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments for any aiokafka client."""
    if settings.bootstrap_servers is None:
        msg = "no broker: KAFKA_BOOTSTRAP_SERVERS is unset"
        raise ValueError(msg)
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_username is not None  # guaranteed by Settings validation
        assert settings.sasl_password is not None
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username.get_secret_value()
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


_PROBE_TIMEOUT_S: Final = 10.0
# Errors that retrying cannot fix: the broker answered and said no.
_REFUSALS: Final = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


def _bootstrap_hosts(settings: Settings) -> list[tuple[str, int]]:
    hosts = []
    for server in (settings.bootstrap_servers or "").split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit():
            hosts.append((host.strip("[]"), int(port)))
    return hosts


async def check_access(settings: Settings) -> None:
    """Connect once to each bootstrap server and raise ConfigError if one refuses us.

    aiokafka's bootstrap folds every failure into "Unable to bootstrap", so a wrong
    password looks like an unreachable broker and would be retried. This asks each server
    directly: a SASL authentication failure or a TLS certificate error is final (one clear
    error naming the setting). Unreachable servers are not an error here.
    """
    options = client_options(settings)
    options.pop("bootstrap_servers")
    options["client_id"] = f"{settings.app_id}-probe"
    for host, port in _bootstrap_hosts(settings):
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                conn = await create_conn(host, port, **options)
            conn.close()
        except _REFUSALS as exc:
            detail = str(exc).strip() or type(exc).__name__
            msg = (
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD: {host}:{port} refused "
                f"{settings.sasl_mechanism} authentication ({type(exc).__name__}: {detail}); "
                "check the credentials and the mechanism"
            )
            raise ConfigError(msg) from exc
        except ssl.SSLCertVerificationError as exc:
            msg = (
                f"KAFKA_SECURITY_PROTOCOL={settings.security_protocol}: TLS with {host}:{port} "
                f"failed ({exc}); check KAFKA_SSL_CAFILE and the broker's certificate"
            )
            raise ConfigError(msg) from exc
        except Exception as exc:  # unreachable or not yet up: the caller retries
            logger.debug("access_probe_failed", host=host, port=port, error=repr(exc))


def topic_plan(settings: Settings) -> list[NewTopic]:
    """Every topic the app owns, with its partitions and configuration."""
    partitions, replicas = settings.topic_partitions, settings.topic_replication
    names = [
        settings.input_topic,
        settings.keyed_topic,
        settings.scores_topic,
        settings.rolling_topic,
        settings.anomaly_topic,
        settings.observer_topic,
    ]
    plan = [NewTopic(name, partitions, replicas) for name in names]
    plan.append(
        NewTopic(
            settings.deadletter_topic,
            partitions,
            replicas,
            topic_configs={"max.message.bytes": str(DEADLETTER_MAX_BYTES)},
        )
    )
    # The tables' changelogs too, before any worker starts: workers starting together each
    # let Faust create them, and one that subscribed before a creation finished did not see
    # the topic for minutes (its assignor ignored it; its producer crashed on a write).
    plan.extend(
        NewTopic(
            changelog_topic(settings.app_id, table),
            partitions,
            replicas,
            topic_configs={"cleanup.policy": "compact"},
        )
        for table in TABLE_NAMES
    )
    return plan


async def topic_max_bytes(settings: Settings, topic: str) -> int | None:
    """A topic's `max.message.bytes`; None when the broker does not say (no such topic, no
    permission to describe it)."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
        )
        for response in responses:
            for resource in response.resources:
                error_code, _, _, _, entries = resource[:5]
                if error_code:
                    return None
                for entry in entries:
                    if entry[0] == "max.message.bytes" and entry[1] is not None:
                        return int(entry[1])
        return None
    except Exception as exc:  # an ACL, an old broker: letters are sized for 1 MB
        logger.warning("topic_config_unknown", topic=topic, error=repr(exc))
        return None
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the app's topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topic_plan(settings) if topic.name not in existing]
        if missing:
            await admin.create_topics(missing)
            logger.info(
                "topics_created",
                topics=[t.name for t in missing],
                partitions=settings.topic_partitions,
            )
        return [t.name for t in missing]
    finally:
        await admin.close()
