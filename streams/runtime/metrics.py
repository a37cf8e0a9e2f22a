"""Prometheus metrics of a worker, on a registry of its own, served on their own port.

Every name starts with `insights_`; counters end in `_total`, durations are `_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

__all__ = ["PREFIX", "Metrics", "serve_metrics"]

PREFIX: Final = "insights"
_LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


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
            f"{PREFIX}_events_received", "Input messages read from the input topic", registry=r
        )
        self.events_valid = Counter(
            f"{PREFIX}_events_valid", "Input messages that passed validation", registry=r
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            f"{PREFIX}_duplicates",
            "Observations already counted (same event_id within the dedup TTL), per scope",
            registry=r,
        )
        self.late = Counter(
            f"{PREFIX}_late_events",
            "Observations whose every window had closed (also dead letters, reason late)",
            registry=r,
        )
        self.over_capacity = Counter(
            f"{PREFIX}_over_capacity_events",
            "Observations for a new key beyond INSIGHTS_MAX_KEYS_PER_PARTITION (dead letters, "
            "reason over_capacity)",
            ["partition"],
            registry=r,
        )
        self.dedup_evicted = Counter(
            f"{PREFIX}_dedup_evicted",
            "Event ids forgotten before INSIGHTS_DEDUP_TTL (INSIGHTS_DEDUP_MAX_IDS reached)",
            registry=r,
        )
        self.unprocessable = Counter(
            f"{PREFIX}_unprocessable",
            "Failures handling one message's or one window's content, by stage (a message is "
            "also a dead letter, reason unprocessable)",
            ["stage"],
            registry=r,
        )
        self.records_emitted = Counter(
            f"{PREFIX}_records_emitted", "Records sent to output topics", ["topic"], registry=r
        )
        self.anomalies = Counter(
            f"{PREFIX}_anomalies", "Anomalies detected, by severity", ["severity"], registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_event_to_insight_seconds",
            "From an input record's Kafka timestamp to the flush that published its effect",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_processing_seconds",
            "Time to process one batch, by agent",
            ["agent"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Messages between the log end and the committed offset, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            f"{PREFIX}_assigned_partitions",
            "Partitions assigned to this worker",
            ["topic"],
            registry=r,
        )
        self.state_keys = Gauge(
            f"{PREFIX}_state_keys", "Live keys in a table's working state", ["table"], registry=r
        )
        self.state_windows = Gauge(
            f"{PREFIX}_state_panes",
            "Live window panes in the rolling state (windows are merged from panes)",
            registry=r,
        )
        self.watermark_age = Gauge(
            f"{PREFIX}_watermark_age_seconds",
            "Wall clock minus the event-time watermark, per keyed partition of this worker",
            ["partition"],
            registry=r,
        )
        self.watermark_source = Gauge(
            f"{PREFIX}_watermark_holding_source",
            "The input partition whose watermark holds the keyed partition's back (the "
            "slowest active source; -1: every source idle, -2: a source not heard from)",
            ["partition"],
            registry=r,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready", "1 when partitions are assigned and tables recovered", registry=r
        )
        self.build = Info(f"{PREFIX}_build", "Build information", registry=r)
        self.build.info({"version": _version()})


def serve_metrics(metrics: Metrics, host: str, port: int) -> None:
    """Serve `/metrics` from a thread, so scrapes work even while the event loop is busy."""
    start_http_server(port, addr=host, registry=metrics.registry)
