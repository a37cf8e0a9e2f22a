"""The rolling insights step: event-time windows over panes, aggregates, finals, dedup."""

from agents.rolling.agent import RollingEngine, attach_rolling
from agents.rolling.aggregate import Aggregate, BasicAggregate, Summary
from agents.rolling.sketch import QuantileSketch
from agents.rolling.state import Emission, Outcome, PartitionState
from streams.runtime.windows import Window, WindowPlan

__all__ = [
    "Aggregate",
    "BasicAggregate",
    "Emission",
    "Outcome",
    "PartitionState",
    "QuantileSketch",
    "RollingEngine",
    "Summary",
    "Window",
    "WindowPlan",
    "attach_rolling",
]
