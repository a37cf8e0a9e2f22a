"""Output records of `insights.observers`: per-window consensus and per-observer drift."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.insights import WindowInfo
from models.timefmt import UtcDatetime

__all__ = ["ConsensusRecord", "ObserverRecord", "ObserverScore"]


class ObserverScore(BaseModel):
    """One observer's standing in one window."""

    model_config = ConfigDict(frozen=True)

    observer_id: str
    mean: float
    count: int
    deviation: float
    outlier: bool


class ConsensusRecord(BaseModel):
    """What the observers of one subject and metric agree on in one closed window."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    kind: Literal["consensus"] = "consensus"
    subject_id: str
    metric: str
    window: WindowInfo
    consensus: float
    spread: float
    observers: tuple[ObserverScore, ...]
    # More observers than INSIGHTS_MAX_OBSERVERS_PER_WINDOW reported in the window: the
    # consensus is of the first ones kept (`observers` lists them).
    observers_truncated: bool = False
    emitted_at: UtcDatetime


class ObserverRecord(BaseModel):
    """How far one observer drifts from consensus over the windows it was scored in."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    kind: Literal["observer"] = "observer"
    observer_id: str
    windows_scored: int
    outlier_windows: int
    drift_score: float
    stale: bool
    last_seen: UtcDatetime
    emitted_at: UtcDatetime
