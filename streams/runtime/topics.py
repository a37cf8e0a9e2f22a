"""Every topic the app reads or writes, declared in one place. Values are raw bytes:
the models' codec does the (de)serialisation, so dead letters keep the original bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import faust

from streams.runtime.settings import Settings

__all__ = ["DEADLETTER_MAX_BYTES", "Topics", "declare_topics"]

# Dead letters carry the original message (up to the broker's own limit) plus context.
DEADLETTER_MAX_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Topics:
    """The app's topics: input, internal keyed stream, outputs and dead letters."""

    input: faust.TopicT
    keyed: faust.TopicT
    scores: faust.TopicT
    deadletter: faust.TopicT
    rolling: faust.TopicT
    anomalies: faust.TopicT
    observers: faust.TopicT


def _raw(app: faust.App, name: str, **options: Any) -> faust.TopicT:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **options,
    )


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Build the topic objects; partitions come from INSIGHTS_TOPIC_PARTITIONS."""
    partitions = settings.topic_partitions
    return Topics(
        input=_raw(app, settings.input_topic, partitions=partitions),
        keyed=_raw(app, settings.keyed_topic, partitions=partitions, internal=True),
        scores=_raw(app, settings.scores_topic, partitions=partitions, internal=True),
        deadletter=_raw(
            app,
            settings.deadletter_topic,
            partitions=partitions,
            config={"max.message.bytes": str(DEADLETTER_MAX_BYTES)},
        ),
        rolling=_raw(app, settings.rolling_topic, partitions=partitions),
        anomalies=_raw(app, settings.anomaly_topic, partitions=partitions),
        observers=_raw(app, settings.observer_topic, partitions=partitions),
    )
