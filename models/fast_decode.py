"""Input bytes straight to keyed records, with a fast path for plainly valid observations.

Pydantic validation of an `Observation`, then the round trip of `observed_at` through a
datetime, cost ~5 µs per event. Most input is plainly valid: the fast path checks the
contract's rules with a few type and length tests and builds the keyed records directly.
Anything it is not sure about (another type, a bound, an unknown field, a schema version)
goes the full way through `decode_observation`, which decides and explains. So the fast
path only ever accepts what the model accepts, with the same field values
(`tests/unit/test_fast_decode.py` checks both against each other).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Final

from models.codec import decode_observation, parse_json
from models.keyed import KeyedObservation
from models.observation import (
    ENTITY_MAX_CHARS,
    ID_MAX_CHARS,
    MAX_ATTRIBUTES,
    MAX_EPOCH_MS,
    METRIC_CHARS,
    MIN_EPOCH_MS,
    SCHEMA_VERSION,
    VALUE_MAX,
    Observation,
    parse_observed_at,
    valid_unicode,
)
from models.timefmt import to_epoch_ms

__all__ = ["decode_keyed"]

_FIELDS: Final = frozenset(Observation.model_fields)
_METRIC: Final = re.compile(METRIC_CHARS)
_EXACT_INT: Final = 1 << 53  # ints beyond this are left to the model (float conversion)
# Metric names already checked (a regex match an event saved), mapped to their interned
# string; cleared when full, so a stream of ever new names cannot grow it.
_KNOWN_METRICS_MAX: Final = 10_000
_known_metrics: dict[str, str] = {}


def decode_keyed(
    raw: bytes | None, *, max_bytes: int, partition: int, offset: int, timestamp_ms: int
) -> list[KeyedObservation]:
    """The keyed records of one input message (subject, and group when it has one), or
    DecodeError with the dead-letter reason."""
    if raw is not None and len(raw) <= max_bytes:
        document = parse_json(raw)
        if type(document) is dict:
            records = _fast(document, partition, offset, timestamp_ms)
            if records is not None:
                return records
    observation = decode_observation(raw, max_bytes=max_bytes)
    return KeyedObservation.for_scopes(observation, partition, offset, timestamp_ms)


def _fast(
    doc: dict[str, Any], partition: int, offset: int, timestamp_ms: int
) -> list[KeyedObservation] | None:
    """Keyed records if `doc` is plainly valid, else None (the model decides)."""
    if not _FIELDS.issuperset(doc):
        return None
    event_id = doc.get("event_id")
    observer_id = doc.get("observer_id")
    subject_id = doc.get("subject_id")
    metric = doc.get("metric")
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= ID_MAX_CHARS
        and type(observer_id) is str
        and 0 < len(observer_id) <= ID_MAX_CHARS
        and type(subject_id) is str
        and 0 < len(subject_id) <= ENTITY_MAX_CHARS
        and type(metric) is str
        and valid_unicode(event_id)
        and valid_unicode(observer_id)
        and valid_unicode(subject_id)
    ):
        return None
    known = _known_metrics.get(metric)
    if known is None:
        if len(metric) > ID_MAX_CHARS or _METRIC.fullmatch(metric) is None:
            return None
        if len(_known_metrics) >= _KNOWN_METRICS_MAX:
            _known_metrics.clear()
        # One string per metric name in every key's state, not one each.
        known = _known_metrics[metric] = sys.intern(metric)
    value = doc.get("value")
    if type(value) is float:
        if not -VALUE_MAX <= value <= VALUE_MAX:  # also NaN
            return None
    elif type(value) is int and -_EXACT_INT < value < _EXACT_INT:
        value = float(value)
    else:
        return None
    observed_at = doc.get("observed_at")
    if type(observed_at) is int:
        if not MIN_EPOCH_MS <= observed_at <= MAX_EPOCH_MS:
            return None
        observed_ms = observed_at
    elif type(observed_at) is str:
        try:
            observed_ms = to_epoch_ms(parse_observed_at(observed_at))
        except (TypeError, ValueError):
            return None
    else:
        return None
    group_id = doc.get("group_id")
    if group_id is not None and not (
        type(group_id) is str and 0 < len(group_id) <= ENTITY_MAX_CHARS and valid_unicode(group_id)
    ):
        return None
    attributes = doc.get("attributes")
    if attributes is not None:
        if type(attributes) is not dict or len(attributes) > MAX_ATTRIBUTES:
            return None
        for name, text in attributes.items():  # a loop: no generator per event
            if type(name) is not str or type(text) is not str:
                return None
            if not (valid_unicode(name) and valid_unicode(text)):
                return None
    version = doc.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:
        return None
    common = (
        event_id,
        observer_id,
        subject_id,
        group_id,
        known,
        value,
        observed_ms,
        attributes,
        partition,
        offset,
        timestamp_ms,
    )
    records = [KeyedObservation("subject", subject_id, *common)]
    if group_id is not None:
        records.append(KeyedObservation("group", group_id, *common))
    return records
