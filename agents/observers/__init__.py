"""The observer coordinator: consensus per closed window, drift and staleness per observer."""

from agents.observers.agent import ObserverEngine, attach_observers
from agents.observers.book import (
    SCORES_PER_RECORD,
    ObserverBook,
    ObserverStatus,
    Score,
    ScoreRow,
    decode_scores,
    encode_scores,
)
from agents.observers.consensus import Consensus, Standing, consensus_of
from agents.observers.coordinator import Coordinator

__all__ = [
    "SCORES_PER_RECORD",
    "Consensus",
    "Coordinator",
    "ObserverBook",
    "ObserverEngine",
    "ObserverStatus",
    "Score",
    "ScoreRow",
    "Standing",
    "attach_observers",
    "consensus_of",
    "decode_scores",
    "encode_scores",
]
