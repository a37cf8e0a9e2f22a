"""Building and sending dead letters: the one path for every message that is not used."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import faust
import structlog

from models import DeadLetter, DeadLetterReason, FieldError, dumps, encode_bytes, utc_now
from streams.faust_compat import send_caused_by
from streams.metrics import Metrics

__all__ = ["DeadLetterSink", "SourceMessage", "build_dead_letter"]

logger = structlog.get_logger(__name__)


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
) -> DeadLetter:
    """The dead-letter record for a source message (its original key and value kept)."""
    key_text, key_encoding = encode_bytes(key)
    value_text, encoding = encode_bytes(value)
    return DeadLetter(
        reason=reason,
        errors=tuple(errors),
        topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        key_encoding=key_encoding,
        value=value_text,
        encoding=encoding,
        received_at=utc_now(),
        event_id=event_id,
    )


class DeadLetterSink:
    """Sends dead letters, logs where each came from, counts them by reason."""

    def __init__(self, app: faust.App, topic: str, metrics: Metrics) -> None:
        self._app = app
        self._topic = topic
        self._metrics = metrics

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
