"""Every table the app keeps, declared in one place (changelog-backed, raw bytes)."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from streams.settings import Settings

__all__ = ["Tables", "declare_tables"]


@dataclass(frozen=True)
class Tables:
    """The app's tables."""

    rolling_state: TableT[bytes, bytes]
    observer_state: TableT[bytes, bytes]


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    """Tables are co-partitioned with the keyed topic (same partition count)."""
    rolling_state = app.Table(
        "rolling-state",
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-partition window panes, watermark and dedup journal of the rolling agent",
    )
    observer_state = app.Table(
        "observer-state",
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-observer drift figures, co-partitioned with the observer-scores topic",
    )
    return Tables(rolling_state=rolling_state, observer_state=observer_state)
