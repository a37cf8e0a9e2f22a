"""The input contract's rules (docs/contracts.md) for the candidates that are not our worker:
which messages are valid observations, and their event time. Stdlib only: it runs in both
venvs.

`check(raw, loads)` accepts exactly what the contract accepts on the rules the generator's
invalid messages break (streams/cli/generator.py `_invalid_documents`) and on every other rule
that needs only the message: JSON object, no unknown field, ids and names of 1-128 (subject
and group 1-256) characters of valid Unicode, metric of `[A-Za-z0-9_.:-]`, `value` a finite
number (not a boolean or string) of magnitude at most 1e150, `observed_at` RFC 3339 with `Z`
or an offset (up to 9 fraction digits) or integer epoch ms within years 1-9999, attributes
at most 32 string pairs, `schema_version` absent or 1, at most 64 KiB. Not here: what needs
the reader's clock or settings (our worker's INSIGHTS_MAX_FUTURE and its earliest window
start), and duplicates (no dedup: a candidate that wants it does it itself).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["MAX_MESSAGE_BYTES", "check", "event_ms", "observed_ms"]

MAX_MESSAGE_BYTES: Final = 64 * 1024  # INSIGHTS_MAX_MESSAGE_BYTES' default
_FIELDS: Final = frozenset(
    {
        "event_id",
        "observer_id",
        "subject_id",
        "metric",
        "value",
        "observed_at",
        "group_id",
        "attributes",
        "schema_version",
    }
)
_ID_MAX: Final = 128
_ENTITY_MAX: Final = 256
_METRIC: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_VALUE_MAX: Final = 1e150
_MAX_ATTRIBUTES: Final = 32
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_MIN_MS: Final = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def _unicode(value: object) -> bool:
    """A string without a lone surrogate (no UTF-8 can carry one)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object, limit: int) -> bool:
    """A string of 1..limit characters without a lone surrogate."""
    return type(value) is str and 0 < len(value) <= limit and _unicode(value)


def observed_ms(raw: object) -> int | None:
    """Epoch ms of an `observed_at` (integer epoch ms, or RFC 3339 with `Z` or an offset;
    sub-millisecond digits truncated), None if the contract rejects it."""
    if type(raw) is int:
        return raw if _MIN_MS <= raw <= _MAX_MS else None
    if type(raw) is not str or _RFC3339.fullmatch(raw) is None:
        return None
    try:
        # Python 3.11 reads `Z` and any number of fraction digits (truncated to 6).
        moment = datetime.fromisoformat(raw if raw.isupper() else raw.upper())
    except ValueError:  # 25:00, 02-30, an offset of 24 h or more
        return None
    ms = (moment - _EPOCH) // _MS
    return ms if _MIN_MS <= ms <= _MAX_MS else None


def event_ms(doc: Any) -> int | None:
    """The event time (epoch ms) of `doc`, a decoded JSON value, if it is a valid
    observation; None if it is not."""
    if type(doc) is not dict or not _FIELDS.issuperset(doc):
        return None
    if not (
        _text(doc.get("event_id"), _ID_MAX)
        and _text(doc.get("observer_id"), _ID_MAX)
        and _text(doc.get("subject_id"), _ENTITY_MAX)
    ):
        return None
    metric = doc.get("metric")
    if type(metric) is not str or len(metric) > _ID_MAX or _METRIC.fullmatch(metric) is None:
        return None
    value = doc.get("value")
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            return None
    elif type(value) is not float:  # also bool, str, None
        return None
    if not (math.isfinite(value) and -_VALUE_MAX <= value <= _VALUE_MAX):
        return None
    group_id = doc.get("group_id")
    if group_id is not None and not _text(group_id, _ENTITY_MAX):
        return None
    attributes = doc.get("attributes")
    if attributes is not None:
        if type(attributes) is not dict or len(attributes) > _MAX_ATTRIBUTES:
            return None
        for name, text in attributes.items():
            if not (_unicode(name) and _unicode(text)):
                return None
    version = doc.get("schema_version", 1)
    if type(version) is not int or version != 1:
        return None
    return observed_ms(doc.get("observed_at"))


def check(raw: bytes | None, loads: Callable[[bytes], Any]) -> tuple[dict[str, Any], int] | None:
    """(document, event time in epoch ms) of a message value if it is a valid observation,
    else None. `loads` is the candidate's JSON decoder (its errors mean: not valid)."""
    if raw is None or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        doc = loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError (orjson's, json's), not UTF-8
        return None
    ms = event_ms(doc)
    return None if ms is None else (doc, ms)
