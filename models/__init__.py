"""Pydantic models of every record on the product's topics, and their JSON codec."""

from models.anomaly import Anomaly, Severity
from models.codec import DecodeError, decode_observation, dumps, loads_model
from models.deadletter import DeadLetter, DeadLetterReason, FieldError, encode_bytes
from models.insights import RollingInsight, WindowInfo, WindowType, window_fragment, window_json
from models.observation import SCHEMA_VERSION, Observation
from models.observers import ConsensusRecord, ObserverRecord, ObserverScore
from models.timefmt import (
    UtcDatetime,
    format_utc,
    from_epoch_ms,
    stamp_utc,
    to_epoch_ms,
    utc_ms,
    utc_now,
)

__all__ = [
    "SCHEMA_VERSION",
    "Anomaly",
    "ConsensusRecord",
    "DeadLetter",
    "DeadLetterReason",
    "DecodeError",
    "FieldError",
    "Observation",
    "ObserverRecord",
    "ObserverScore",
    "RollingInsight",
    "Severity",
    "UtcDatetime",
    "WindowInfo",
    "WindowType",
    "decode_observation",
    "dumps",
    "encode_bytes",
    "format_utc",
    "from_epoch_ms",
    "loads_model",
    "stamp_utc",
    "to_epoch_ms",
    "utc_ms",
    "utc_now",
    "window_fragment",
    "window_json",
]
