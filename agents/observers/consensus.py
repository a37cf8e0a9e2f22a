"""Observer consensus of one closed window: the median of the observers' means, the median
absolute deviation around it, and each observer's robust deviation (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["MAD_SCALE", "MEANAD_SCALE", "Consensus", "Standing", "consensus_of"]

# Robust units: 1.4826 * MAD estimates a normal standard deviation; when MAD is 0 (half the
# observers agree exactly) 1.2533 * the mean absolute deviation is used (Iglewicz & Hoaglin).
MAD_SCALE: Final = 1.4826
MEANAD_SCALE: Final = 1.253314


@dataclass(frozen=True, slots=True)
class Standing:
    """One observer's place in one window."""

    observer_id: str
    mean: float
    count: int
    deviation: float
    outlier: bool
    last_seen_ms: int


@dataclass(frozen=True, slots=True)
class Consensus:
    """What the observers of a window agree on, and who stands apart."""

    consensus: float
    spread: float
    standings: tuple[Standing, ...]


def consensus_of(
    per_observer: Sequence[tuple[str, int, float, int]], threshold: float
) -> Consensus | None:
    """From (observer, count, sum, last ms) per observer; None below two observers."""
    if len(per_observer) < 2:
        return None
    means = [
        (observer, total / count, count, last) for observer, count, total, last in per_observer
    ]
    center = statistics.median(m for _, m, _, _ in means)
    distances = [abs(m - center) for _, m, _, _ in means]
    mad = statistics.median(distances)
    scale = MAD_SCALE * mad if mad > 0 else MEANAD_SCALE * statistics.fmean(distances)
    standings = []
    for observer, mean, count, last in means:
        deviation = (mean - center) / scale if scale > 0 else 0.0
        standings.append(
            Standing(observer, mean, count, deviation, abs(deviation) > threshold, last)
        )
    return Consensus(center, mad, tuple(standings))
