"""Observer consensus of one closed window: the median of the observers' means, the median
absolute deviation around it, and each observer's robust deviation (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

__all__ = ["MAD_SCALE", "MEANAD_SCALE", "Consensus", "Standing", "consensus_of"]

# Robust units: 1.4826 * MAD estimates a normal standard deviation; when MAD is 0 (half the
# observers agree exactly) 1.2533 * the mean absolute deviation is used (Iglewicz & Hoaglin).
MAD_SCALE: Final = 1.4826
MEANAD_SCALE: Final = 1.253314


@dataclass(slots=True)
class Standing:
    """One observer's place in one window. (Not frozen: one consensus per closed window,
    and a frozen dataclass took a microsecond more per standing to build.)"""

    observer_id: str
    mean: float
    count: int
    deviation: float
    outlier: bool
    last_seen_ms: int


class Consensus(NamedTuple):
    """What the observers of a window agree on, and who stands apart."""

    consensus: float
    spread: float
    standings: tuple[Standing, ...]


def _median(values: list[float]) -> float:
    """`statistics.median`, the same arithmetic, without its generic-input handling."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def consensus_of(
    per_observer: Sequence[tuple[str, int, float, int]], threshold: float
) -> Consensus | None:
    """From (observer, count, sum, last ms) per observer; None below two observers."""
    if len(per_observer) < 2:
        return None
    means = [total / count for _, count, total, _ in per_observer]
    center = _median(means)
    distances = [abs(m - center) for m in means]
    mad = _median(distances)
    # (statistics.fmean: fsum over the count)
    scale = MAD_SCALE * mad if mad > 0 else MEANAD_SCALE * (math.fsum(distances) / len(distances))
    standings = []
    for (observer, count, _, last), mean in zip(per_observer, means, strict=True):
        deviation = (mean - center) / scale if scale > 0 else 0.0
        standings.append(
            Standing(observer, mean, count, deviation, abs(deviation) > threshold, last)
        )
    return Consensus(center, mad, tuple(standings))
