"""UTC timestamps as the contract writes them: RFC 3339, millisecond precision, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Final

from pydantic import AfterValidator, PlainSerializer

__all__ = [
    "EPOCH",
    "UtcDatetime",
    "format_utc",
    "from_epoch_ms",
    "stamp_utc",
    "to_epoch_ms",
    "utc_ms",
    "utc_now",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def from_epoch_ms(ms: int) -> datetime:
    """Exact conversion of epoch milliseconds to an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=ms)


def to_epoch_ms(moment: datetime) -> int:
    """Exact conversion of an aware datetime to epoch milliseconds (sub-ms truncated)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def format_utc(moment: datetime) -> str:
    """`2026-11-27T12:00:03.120Z`; the fraction is left out when it is zero."""
    moment = moment.astimezone(UTC)
    ms = moment.microsecond // 1000
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


@lru_cache(maxsize=8192)
def _utc_second(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def utc_ms(ms: int) -> str:
    """`format_utc(from_epoch_ms(ms))`, for the hot path: the text of each second is
    remembered (a flush's records share their windows' bounds and mostly their seconds)."""
    seconds, millis = divmod(ms, 1000)
    base = _utc_second(seconds)
    return f"{base}.{millis:03d}Z" if millis else f"{base}Z"


@lru_cache(maxsize=8)
def stamp_utc(moment: datetime) -> str:
    """`format_utc(moment)`, remembered for the last few moments: a flush stamps every
    record it sends with one `emitted_at`."""
    return format_utc(moment)


def utc_now() -> datetime:
    """The current wall-clock time, UTC-aware."""
    return datetime.now(tz=UTC)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        msg = "naive datetimes are rejected: give an offset or Z"
        raise ValueError(msg)
    return moment.astimezone(UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_require_aware),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
