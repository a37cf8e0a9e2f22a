"""Building and sending dead letters: the one path for every message that is not used."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Final, Protocol

import faust
import structlog

from models import DeadLetter, DeadLetterReason, FieldError, dumps, encode_bytes, utc_now
from streams.faust.sends import send_caused_by
from streams.runtime.metrics import Metrics
from streams.runtime.settings import PRODUCER_MAX_REQUEST_BYTES

__all__ = ["LETTER_MAX_BYTES", "DeadLetterSink", "SourceMessage", "build_dead_letter"]

logger = structlog.get_logger(__name__)

# A letter's largest size when the dead-letter topic's own limit is not known: below the
# 1 MiB a topic accepts by default, with room for the record's headers and batch overhead.
LETTER_MAX_BYTES: Final = 1_000_000
_RECORD_OVERHEAD: Final = 4096  # a record's headers and its batch's framing, at most
_MAX_ERRORS: Final = 20  # field errors kept per letter (as the decoders report at most)


class SourceMessage(Protocol):
    """A message as read (a Faust `Message` or an aiokafka `ConsumerRecord`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def build_dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: DeadLetterReason,
    errors: Sequence[FieldError],
    event_id: str | None = None,
    max_bytes: int = LETTER_MAX_BYTES,
) -> DeadLetter:
    """The dead-letter record for a source message (its original key and value kept, cut
    to their first bytes when the letter would pass `max_bytes`)."""
    kept_key, kept_value = key, value
    # Text read from a message that is not valid Unicode (an escaped lone surrogate in an
    # id, an attribute name in an error's field path) is written escaped.
    errors = [FieldError(field=_writable(e.field), message=_writable(e.message)) for e in errors]
    event_id = _writable(event_id) if event_id is not None else None
    while True:
        key_text, key_encoding = encode_bytes(kept_key)
        value_text, encoding = encode_bytes(kept_value)
        letter = DeadLetter(
            reason=reason,
            errors=tuple(errors[:_MAX_ERRORS]),
            topic=topic,
            partition=partition,
            offset=offset,
            key=key_text,
            key_encoding=key_encoding,
            value=value_text,
            encoding=encoding,
            received_at=utc_now(),
            event_id=event_id,
            key_bytes=len(key) if key is not None and kept_key != key else None,
            value_bytes=len(value) if value is not None and kept_value != value else None,
        )
        size = len(dumps(letter))
        if size <= max_bytes or not (kept_key or kept_value):
            return letter
        # Halve the larger of the two (escapes and base64 make a letter up to 6x its bytes).
        if len(kept_value or b"") >= len(kept_key or b""):
            kept_value = _prefix(kept_value or b"", len(kept_value or b"") // 2)
        else:
            kept_key = _prefix(kept_key or b"", len(kept_key or b"") // 2)


def _writable(text: str) -> str:
    """`text`, with any lone surrogate escaped (`\\ud800`), so it can be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _prefix(raw: bytes, size: int) -> bytes:
    """The first `size` bytes, ending on a character boundary when `raw` is UTF-8 text."""
    cut = raw[:size]
    for back in range(4):
        try:
            (cut[: len(cut) - back] if back else cut).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return cut[: len(cut) - back] if back else cut
    return cut


class DeadLetterSink:
    """Sends dead letters, logs where each came from, counts them by reason."""

    def __init__(
        self, app: faust.App, topic: str, metrics: Metrics, topic_max_bytes: int | None = None
    ) -> None:
        """`topic_max_bytes`: the dead-letter topic's `max.message.bytes` (None: not known,
        1 MB assumed); a letter that would not fit holds the first bytes of the message."""
        self._app = app
        self._topic = topic
        self._metrics = metrics
        limit = topic_max_bytes if topic_max_bytes is not None else LETTER_MAX_BYTES
        limit = min(limit, PRODUCER_MAX_REQUEST_BYTES)  # a request holds it whole
        self.max_bytes = max(limit - _RECORD_OVERHEAD, limit // 2)

    async def send(
        self,
        message: SourceMessage,
        reason: DeadLetterReason,
        errors: Sequence[FieldError],
        headers: list[tuple[str, bytes]] | None = None,
        event_id: str | None = None,
    ) -> Awaitable[None]:
        """Dead-letter an input message as it was read (see `send_record`)."""
        return await self.send_record(
            headers=headers,
            event_id=event_id,
            source=(message.topic, message.partition),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            reason=reason,
            errors=errors,
        )

    async def send_record(
        self,
        *,
        source: tuple[str, int],
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: DeadLetterReason,
        errors: Sequence[FieldError],
        event_id: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[None]:
        """Send one dead letter (keyed like its source); returns its delivery, to await
        before the offsets that caused it commit: it raises if Kafka refused the letter
        (after the client's retries), and counts the letter once it is delivered.

        `source` is the (topic, partition) whose processing found it, for transactions.
        """
        record = build_dead_letter(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            reason=reason,
            errors=errors,
            event_id=event_id,
            max_bytes=self.max_bytes,
        )
        sent = await send_caused_by(
            self._app,
            self._topic,
            key,
            dumps(record),
            source_topic=source[0],
            source_partition=source[1],
            headers=headers,
        )
        logger.warning(
            "dead_letter",
            reason=reason.value,
            topic=topic,
            partition=partition,
            offset=offset,
            errors=[f"{e.field}: {e.message}" for e in errors[:5]],
        )
        return self._delivered(sent, reason, (topic, partition, offset))

    async def _delivered(
        self, sent: Awaitable[Any], reason: DeadLetterReason, where: tuple[str, int, int]
    ) -> None:
        try:
            await sent
        except Exception as exc:
            logger.error(
                "dead_letter_not_delivered",
                deadletter_topic=self._topic,
                topic=where[0],
                partition=where[1],
                offset=where[2],
                error=repr(exc),
            )
            raise
        self._metrics.dead_letters.labels(reason=reason.value).inc()
