"""The coordinator step: on each closed subject window with two or more observers, publish
the consensus and hand each observer's standing to the observer agent (keyed by observer)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from agents.observers.book import Score
from agents.observers.consensus import consensus_of
from models import stamp_utc, window_fragment
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
        spec = window.spec
        # Rendered straight to JSON, field for field as `ConsensusRecord` dumps it (a unit
        # test holds the two equal): one per closed window, on the flush's hot path.
        record = {
            "schema_version": 1,
            "kind": "consensus",
            "subject_id": subject,
            "metric": metric,
            "window": window_fragment(
                spec.type, spec.size_s, spec.step_s, window.start_ms, window.end_ms
            ),
            "consensus": float(result.consensus),
            "spread": float(result.spread),
            "observers": [
                {
                    "observer_id": s.observer_id,
                    "mean": float(s.mean),
                    "count": int(s.count),
                    "deviation": float(s.deviation),
                    "outlier": bool(s.outlier),
                }
                for s in result.standings
            ],
            "emitted_at": stamp_utc(emitted_at),
        }
        out: list[tuple[str, bytes, bytes, Any]] = [
            (self.observer_topic, subject.encode(), orjson.dumps(record), None)
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
