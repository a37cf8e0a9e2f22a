"""Every table the app keeps, declared in one place (changelog-backed, raw bytes)."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from streams.runtime.settings import Settings

__all__ = ["TABLE_NAMES", "Tables", "changelog_topic", "declare_tables"]

ROLLING_STATE = "rolling-state"
OBSERVER_STATE = "observer-state"
TABLE_NAMES = (ROLLING_STATE, OBSERVER_STATE)


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True)
class Tables:
    """The app's tables."""

    rolling_state: TableT[bytes, bytes]
    observer_state: TableT[bytes, bytes]


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    """Tables are co-partitioned with the keyed topic (same partition count)."""
    rolling_state = app.Table(
        ROLLING_STATE,
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-partition window panes, watermark and dedup journal of the rolling agent",
    )
    observer_state = app.Table(
        OBSERVER_STATE,
        partitions=settings.topic_partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per-observer drift figures, co-partitioned with the observer-scores topic",
    )
    return Tables(rolling_state=rolling_state, observer_state=observer_state)
