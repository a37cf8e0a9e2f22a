"""The coordinator step: on each closed subject window with two or more observers, publish
the consensus and hand each observer's standings to the observer agent (keyed by observer,
one record per observer per flush)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from agents.observers.book import SCORES_PER_RECORD, ScoreRow, encode_scores
from agents.observers.consensus import consensus_of
from models import stamp_utc, window_fragment
from streams.faust.sends import Outbound
from streams.runtime.settings import Settings
from streams.runtime.topics import Topics

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

    def judge(
        self, final: Emission, emitted_at: datetime, scores: dict[str, list[ScoreRow]]
    ) -> Outbound | None:
        """The consensus record (topic, key, value, no headers) of one final, None when it
        has none; its observers' scores (primary family only) go into `scores`, by observer,
        for `score_records` to send once per flush."""
        scope, subject, metric = final.key
        if scope != "subject":
            return None
        result = consensus_of(final.summary.per_observer, self.threshold)
        if result is None:
            return None
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
            "consensus": result.consensus,
            "spread": result.spread,
            "observers": [
                {
                    "observer_id": s.observer_id,
                    "mean": s.mean,
                    "count": s.count,
                    "deviation": s.deviation,
                    "outlier": s.outlier,
                }
                for s in result.standings
            ],
            "observers_truncated": final.summary.observers_truncated,
            "emitted_at": stamp_utc(emitted_at),
        }
        if spec == self.primary:
            end_ms, size_ms = window.end_ms, window.size_ms
            for s in result.standings:
                row = (s.observer_id, s.deviation, s.outlier, end_ms, size_ms, s.last_seen_ms)
                scores.setdefault(s.observer_id, []).append(row)
        return self.observer_topic, subject.encode(), orjson.dumps(record), None

    def score_records(self, scores: dict[str, list[ScoreRow]]) -> Iterator[Outbound]:
        """The observer-scores records of one flush: per observer, its rows in order, in
        records of up to `SCORES_PER_RECORD` (keyed by observer: one owner folds them)."""
        for observer_id, rows in scores.items():
            key = observer_id.encode()
            for start in range(0, len(rows), SCORES_PER_RECORD):
                value = encode_scores(rows[start : start + SCORES_PER_RECORD])
                yield self.scores_topic, key, value, None
