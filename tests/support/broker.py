"""Which real broker the integration tests use: env, then testcontainers, then embedded."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from streams.cli.embedded import EmbeddedBroker


@dataclass(frozen=True)
class Broker:
    """A reachable broker and what it can do."""

    bootstrap_servers: str
    kind: str  # "external", "testcontainers" or "embedded"

    @property
    def transactions(self) -> bool:
        """Whether aiokafka's idempotent/transactional producer works (not on Tansu)."""
        return self.kind != "embedded"


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def real_broker() -> Iterator[Broker]:
    """Yield a broker for the session, started here when none is configured."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield Broker(configured, "external")
        return
    if _docker_answers():
        from testcontainers.community.kafka import RedpandaContainer

        with RedpandaContainer() as container:
            yield Broker(container.get_bootstrap_server(), "testcontainers")
        return
    with EmbeddedBroker() as embedded:
        yield Broker(embedded.bootstrap_servers, "embedded")
