"""The input record: one observation, validated strictly against the contract."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from models.timefmt import UtcDatetime, from_epoch_ms, to_epoch_ms

__all__ = [
    "ENTITY_MAX_CHARS",
    "ID_MAX_CHARS",
    "MAX_ATTRIBUTES",
    "MAX_EPOCH_MS",
    "METRIC_CHARS",
    "MIN_EPOCH_MS",
    "SCHEMA_VERSION",
    "VALUE_MAX",
    "Observation",
    "parse_observed_at",
    "valid_unicode",
]

SCHEMA_VERSION: Final = 1

# RFC 3339 date-time: a full date, a time, optional fraction, and a mandatory offset or Z.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})",
)
# Epoch milliseconds in [0001-01-01, 9999-12-31], the range a datetime can hold.
MIN_EPOCH_MS: Final = -62_135_596_800_000
MAX_EPOCH_MS: Final = 253_402_300_799_999
# Field bounds (also read by the fast path of models/fast_decode.py).
ID_MAX_CHARS: Final = 128  # event_id, observer_id, metric
ENTITY_MAX_CHARS: Final = 256  # subject_id, group_id
METRIC_CHARS: Final = r"[A-Za-z0-9_.:-]+"
MAX_ATTRIBUTES: Final = 32
# Largest |value|: a window's sum and sum of squared deviations (Welford's M2) then stay
# finite for up to 10^8 values, so every figure of a window can be represented.
VALUE_MAX: Final = 1e150

EventId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=ID_MAX_CHARS)]
ObserverId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=ID_MAX_CHARS)]
SubjectId = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=ENTITY_MAX_CHARS)
]
GroupId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=ENTITY_MAX_CHARS)]
Metric = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=ID_MAX_CHARS, pattern=f"^{METRIC_CHARS}$"
    ),
]
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Attributes = Annotated[
    dict[Annotated[str, Field(strict=True)], Annotated[str, Field(strict=True)]],
    Field(max_length=MAX_ATTRIBUTES),
]


def valid_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: no lone surrogate (`"\\ud800"` is valid JSON, but
    no UTF-8 can carry it, so no record written from it could be sent)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unicode(text: str) -> str:
    if not valid_unicode(text):
        msg = "contains a lone surrogate (not valid Unicode)"
        raise ValueError(msg)
    return text


def parse_observed_at(raw: Any) -> datetime:
    """Turn an RFC 3339 string (offset required) or epoch milliseconds into a UTC datetime.

    Raises ValueError (or TypeError) with a message fit for a dead letter.
    """
    if isinstance(raw, bool):
        msg = "must be an RFC 3339 string or epoch milliseconds, not a boolean"
        raise TypeError(msg)
    if isinstance(raw, int):
        if not MIN_EPOCH_MS <= raw <= MAX_EPOCH_MS:
            msg = f"epoch milliseconds {raw} out of range"
            raise ValueError(msg)
        return from_epoch_ms(raw)
    if isinstance(raw, str):
        if _RFC3339.fullmatch(raw) is None:
            msg = "must be RFC 3339 with an offset or Z, e.g. 2026-11-27T12:00:00Z"
            raise ValueError(msg)
        text = raw.upper().replace("Z", "+00:00")
        # fromisoformat takes at most 6 fraction digits: drop extra nanosecond digits.
        if "." in text:
            head, _, rest = text.partition(".")
            digits = re.match(r"\d+", rest)
            assert digits is not None  # the regex above guarantees digits after the dot
            text = f"{head}.{digits.group()[:6].ljust(6, '0')}{rest[digits.end() :]}"
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.astimezone(UTC)
        except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
            msg = "out of range: in UTC it falls outside years 1 to 9999"
            raise ValueError(msg) from exc
        except ValueError as exc:
            msg = f"not a valid date-time: {exc}"
            raise ValueError(msg) from exc
    msg = f"must be an RFC 3339 string or epoch milliseconds, not {type(raw).__name__}"
    raise TypeError(msg)


class Observation(BaseModel):
    """One observation of a subject's metric by an observer (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    event_id: EventId
    observer_id: ObserverId
    subject_id: SubjectId
    metric: Metric
    value: FiniteNumber
    observed_at: UtcDatetime
    group_id: GroupId | None = None
    attributes: Attributes | None = None
    schema_version: int = SCHEMA_VERSION

    @field_validator("observed_at", mode="plain")
    @classmethod
    def _observed_at(cls, raw: Any) -> datetime:
        if isinstance(raw, datetime):
            if raw.tzinfo is None:
                msg = "naive datetimes are rejected: give an offset or Z"
                raise ValueError(msg)
            return raw.astimezone(UTC)
        try:
            return parse_observed_at(raw)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("event_id", "observer_id", "subject_id", "group_id", mode="after")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _unicode(value)

    @field_validator("attributes", mode="after")
    @classmethod
    def _attributes(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            for name, text in value.items():
                _unicode(name)
                _unicode(text)
        return value

    @field_validator("value", mode="after")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            msg = "must be finite"
            raise ValueError(msg)
        if abs(value) > VALUE_MAX:
            msg = f"magnitude above {VALUE_MAX:g}: its window figures could not be represented"
            raise ValueError(msg)
        return value

    @property
    def observed_ms(self) -> int:
        """Event time as epoch milliseconds (the unit window maths works in)."""
        return to_epoch_ms(self.observed_at)
