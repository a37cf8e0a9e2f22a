"""The coordinator step: on each closed subject window with two or more observers, publish
the consensus and hand each observer's standing to the observer agent (keyed by observer)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.observers.book import Score
from agents.observers.consensus import consensus_of
from models import ConsensusRecord, ObserverScore, WindowInfo, dumps, from_epoch_ms
from streams.settings import Settings
from streams.topics import Topics

if TYPE_CHECKING:  # the rolling agent imports this module; no import cycle at run time
    from agents.rolling.state import Emission

__all__ = ["Coordinator"]


class Coordinator:
    """Consensus records for every closed window; observer scores from the first window
    family of INSIGHTS_WINDOWS only, so overlapping hopping windows do not score an
    observation several times."""

    def __init__(self, topics: Topics, settings: Settings) -> None:
        self.observer_topic = topics.observers.get_topic_name()
        self.scores_topic = topics.scores.get_topic_name()
        self.primary = settings.windows[0]
        self.threshold = settings.outlier_threshold

    def judge(self, final: Emission, emitted_at: datetime) -> list[tuple[str, bytes, bytes, Any]]:
        """(topic, key, value, trace parent) records for one final; empty when not scored."""
        scope, subject, metric = final.key
        if scope != "subject":
            return []
        result = consensus_of(final.summary.per_observer, self.threshold)
        if result is None:
            return []
        window = final.window
        record = ConsensusRecord(
            subject_id=subject,
            metric=metric,
            window=WindowInfo(
                type=window.spec.type,
                size_s=window.spec.size_s,
                step_s=window.spec.step_s,
                start=from_epoch_ms(window.start_ms),
                end=from_epoch_ms(window.end_ms),
            ),
            consensus=result.consensus,
            spread=result.spread,
            observers=tuple(
                ObserverScore(
                    observer_id=s.observer_id,
                    mean=s.mean,
                    count=s.count,
                    deviation=s.deviation,
                    outlier=s.outlier,
                )
                for s in result.standings
            ),
            emitted_at=emitted_at,
        )
        out: list[tuple[str, bytes, bytes, Any]] = [
            (self.observer_topic, subject.encode(), dumps(record), None)
        ]
        if window.spec == self.primary:
            for standing in result.standings:
                score = Score(
                    standing.observer_id,
                    standing.deviation,
                    standing.outlier,
                    window.end_ms,
                    window.size_ms,
                    standing.last_seen_ms,
                )
                out.append(
                    (self.scores_topic, standing.observer_id.encode(), score.to_bytes(), None)
                )
        return out
