"""The dead-letter record: every input message that was not used, with the reason."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.timefmt import UtcDatetime

__all__ = ["DeadLetter", "DeadLetterReason", "FieldError", "encode_bytes"]


class DeadLetterReason(StrEnum):
    """Why a message was not used."""

    UNDECODABLE = "undecodable"
    INVALID = "invalid"
    LATE = "late"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNPROCESSABLE = "unprocessable"  # any other failure while handling the message's content
    OVER_CAPACITY = "over_capacity"  # a new key beyond INSIGHTS_MAX_KEYS_PER_PARTITION


class FieldError(BaseModel):
    """One problem with one field (`field` is a dotted path; empty for the whole message)."""

    model_config = ConfigDict(frozen=True)

    field: str
    message: str


Encoding = Literal["utf-8", "base64"]


def encode_bytes(raw: bytes | None) -> tuple[str | None, Encoding | None]:
    """Keep original bytes in a JSON record: text when valid UTF-8, else base64."""
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


class DeadLetter(BaseModel):
    """A message that could not be used, its source position, and the original bytes."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    errors: tuple[FieldError, ...]
    topic: str
    partition: int
    offset: int
    key: str | None
    key_encoding: Encoding | None
    value: str | None
    encoding: Encoding | None
    received_at: UtcDatetime
    event_id: str | None = None
    # Set when the letter holds only the first bytes of the original key or value (whose
    # sizes these give), so it stays below the topic's size limit; the whole message stays
    # in its source topic at `offset`.
    key_bytes: int | None = None
    value_bytes: int | None = None
