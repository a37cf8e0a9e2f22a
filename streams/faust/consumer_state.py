"""Read-only views of Faust's and aiokafka's private consumer state.

Changes no behaviour: the agents, the monitor and the readiness check need a partition's fetch
position, log end, committed offset, pause state and co-partitioning, which Faust keeps in
private attributes (`Consumer._committed_offset`, `_paused_partitions`,
`PartitionAssignor._topic_groups`, the consumer thread's `AIOKafkaConsumer`). Reading them
here keeps every such reach in one place. Upstream: no upstream issue found; the change that
would remove it is public accessors. Exercised by tests/unit/test_monitor.py and
tests/unit/test_faust_pitfalls.py (`committed_offset`), tests/unit/test_acks.py
(`current_generation`) and tests/integration/test_ingest.py (the rest, on a broker).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import Message

__all__ = [
    "committed_offset",
    "copartitioned",
    "current_generation",
    "fetch_state",
    "owned_partitions",
    "partition_count",
    "paused_partitions",
]


def current_generation(app: faust.App, message: Message) -> bool:
    """Whether `message` was fetched in the consumer generation that is current now. One
    fetched before a rebalance is fetched again from the committed offset after it."""
    app_: Any = app
    return bool(message.generation_id == app_.consumer_generation_id)


def owned_partitions(app: faust.App, topic: str) -> set[int]:
    """Partitions of `topic` in this worker's consumer assignment right now."""
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


def copartitioned(app: faust.App, topic: str, other: str) -> bool:
    """Whether Faust's assignor put both topics in one co-partitioned group (same partition
    count, subscribed together): partition N of both is then assigned to one worker, with
    one transactional id under `exactly_once`. False until the first assignment."""
    assignor: Any = app.assignor
    groups: dict[str, int] = assignor._topic_groups
    group = groups.get(topic)
    return group is not None and group == groups.get(other)


def fetch_state(app: faust.App, tp: Any) -> tuple[int | None, int | None, int | None]:
    """aiokafka's view of an assigned partition: (fetch position, log end, wall ms of the
    last fetch answer that reported it); None where not known yet. The log end is the last
    stable offset under read_committed (`exactly_once`), else the high watermark. Read from
    the consumer thread's aiokafka consumer (Faust does not expose the position)."""
    thread: Any = getattr(app.consumer, "_thread", None)
    consumer: Any = getattr(thread, "_consumer", None) if thread is not None else None
    subscription: Any = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    assignment: Any = getattr(subscription, "assignment", None)
    state: Any = assignment.state_value(tp) if assignment is not None else None
    if state is None or not state.has_valid_position:
        return None, None, None
    end = state.lso if app.in_transaction else state.highwater
    return (
        int(state.position),
        (int(end) if end is not None and end >= 0 else None),
        state.timestamp,
    )


def partition_count(app: faust.App, topic: str) -> int | None:
    """How many partitions `topic` has, from the consumer's cluster metadata (None: not
    known yet, e.g. before the first assignment)."""
    thread: Any = getattr(app.consumer, "_thread", None)
    consumer: Any = getattr(thread, "_consumer", None) if thread is not None else None
    client: Any = getattr(consumer, "_client", None)
    partitions = client.cluster.partitions_for_topic(topic) if client is not None else None
    return len(partitions) if partitions else None


def paused_partitions(app: faust.App) -> set[Any]:
    """Partitions Faust has paused (recovery, a rebalance, a stopped flow)."""
    consumer: Any = app.consumer
    return set(getattr(consumer, "_paused_partitions", ()))


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The offset this worker last committed for `tp` (Faust keeps it privately)."""
    committed: Any = getattr(app.consumer, "_committed_offset", {})
    value = committed.get(tp)
    return int(value) if value is not None else None
