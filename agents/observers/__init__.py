"""The observer coordinator: consensus per closed window, drift and staleness per observer."""

from agents.observers.agent import ObserverEngine, attach_observers
from agents.observers.book import ObserverBook, ObserverStatus, Score
from agents.observers.consensus import Consensus, Standing, consensus_of
from agents.observers.coordinator import Coordinator

__all__ = [
    "Consensus",
    "Coordinator",
    "ObserverBook",
    "ObserverEngine",
    "ObserverStatus",
    "Score",
    "Standing",
    "attach_observers",
    "consensus_of",
]
