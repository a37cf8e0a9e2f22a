"""Prometheus metrics of a worker, on a registry of its own, served on their own port."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server

__all__ = ["PREFIX", "Metrics", "serve_metrics"]

PREFIX: Final = "insights"


def _version() -> str:
    try:
        return version("observer-coordinator-insights")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Metrics:
    """The collectors one worker updates; one registry per worker keeps tests independent."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.events_received = Counter(
            f"{PREFIX}_events_received", "Input messages read", registry=r
        )
        self.events_valid = Counter(
            f"{PREFIX}_events_valid", "Input messages that passed validation", registry=r
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Messages sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.records_emitted = Counter(
            f"{PREFIX}_records_emitted", "Records sent to output topics", ["topic"], registry=r
        )
        self.duplicates = Counter(
            f"{PREFIX}_duplicates", "Observations counted once already (same event_id)", registry=r
        )
        self.late = Counter(
            f"{PREFIX}_late_events", "Observations whose every window had closed", registry=r
        )
        self.ready = Gauge(
            f"{PREFIX}_ready", "1 when partitions are assigned and recovered", registry=r
        )
        self.build = Info(f"{PREFIX}_build", "Build information", registry=r)
        self.build.info({"version": _version()})


def serve_metrics(metrics: Metrics, host: str, port: int) -> None:
    """Serve `/metrics` from a thread, so scrapes work even while the event loop is busy."""
    start_http_server(port, addr=host, registry=metrics.registry)
