"""Ingest: decode and validate every input message; dead-letter the unusable; key the rest
by subject (and, when it has one, by group) onto the internal keyed topic."""

from __future__ import annotations

import faust
import structlog

from agents.deadletters import DeadLetterSink
from models import DecodeError, decode_observation
from models.keyed import KeyedObservation
from streams.faust_compat import send_caused_by
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import Topics

__all__ = ["attach_ingest"]

logger = structlog.get_logger(__name__)


def attach_ingest(
    app: faust.App, topics: Topics, settings: Settings, metrics: Metrics, sink: DeadLetterSink
) -> None:
    """Register the ingest agent: input topic -> (dead letters | keyed-by-subject topic)."""
    max_bytes = settings.max_message_bytes
    source_topic = topics.input.get_topic_name()
    keyed_topic = topics.keyed.get_topic_name()

    @app.agent(topics.input, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            metrics.events_received.inc()
            try:
                observation = decode_observation(message.value, max_bytes=max_bytes)
            except DecodeError as exc:
                await sink.send(message, exc.reason, exc.errors)
                continue
            metrics.events_valid.inc()
            for record in KeyedObservation.for_scopes(
                observation, message.partition, message.offset
            ):
                await send_caused_by(
                    app,
                    keyed_topic,
                    record.kafka_key,
                    record.to_bytes(),
                    source_topic=source_topic,
                    source_partition=message.partition,
                )
