"""Building and sending dead letters: the one path for every message that is not used."""

from __future__ import annotations

from collections.abc import Sequence

import faust
import structlog
from faust.types import Message

from models import DeadLetter, DeadLetterReason, FieldError, dumps, encode_bytes, utc_now
from streams.metrics import Metrics

__all__ = ["DeadLetterSink"]

logger = structlog.get_logger(__name__)


class DeadLetterSink:
    """Sends a dead letter for a source message, logs where it came from, counts it."""

    def __init__(self, topic: faust.TopicT, metrics: Metrics) -> None:
        self._topic = topic
        self._metrics = metrics

    @staticmethod
    def build(
        message: Message,
        reason: DeadLetterReason,
        errors: Sequence[FieldError],
        event_id: str | None = None,
    ) -> DeadLetter:
        """The dead-letter record for `message` (its original key and value kept)."""
        key, key_encoding = encode_bytes(message.key)
        value, encoding = encode_bytes(message.value)
        return DeadLetter(
            reason=reason,
            errors=tuple(errors),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=key,
            key_encoding=key_encoding,
            value=value,
            encoding=encoding,
            received_at=utc_now(),
            event_id=event_id,
        )

    async def send(
        self,
        message: Message,
        reason: DeadLetterReason,
        errors: Sequence[FieldError],
        event_id: str | None = None,
    ) -> None:
        """Send the dead letter (keyed like the source message) and count it."""
        record = self.build(message, reason, errors, event_id)
        await self._topic.send(key=message.key, value=dumps(record))
        self._metrics.dead_letters.labels(reason=reason.value).inc()
        logger.warning(
            "dead_letter",
            reason=reason.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            errors=[f"{e.field}: {e.message}" for e in errors[:5]],
        )
