"""Changelog highwaters for recovery: asked of the broker, and raised to what a fetch reports.

A subclass of Faust's `AIOKafkaConsumerThread` (registered by `transport`);
`ListOffsetsHighwaters._highwaters` replaces Faust's:

1. Under `exactly_once` Faust reads each changelog partition's highwater with aiokafka's
   `last_stable_offset(tp)`, a value cached from the last fetch of that partition: None (read
   as "empty") for a partition this worker has not fetched yet, stale for one it stopped
   fetching. A survivor of a crash could then fail recovery with `ConsistencyError` (an offset
   it had read above a highwater of -1). Here it is a ListOffsets request
   (`AIOKafkaConsumer.end_offsets`), which under read_committed answers the current last
   stable offset.
2. The embedded broker (Tansu) answers ListOffsets with the base offset of the partition's last
   record batch + 1, not the offset after its last record, so recovery stopped before the rest
   of the last batch a changelog partition got. Here each highwater is the larger of that
   answer and what a fetch of the offset before it reports (`fetched_ends`); on Apache Kafka
   the two agree.

Upstream: robinhood/faust#658 (open, the project faust-streaming forked) reports the same
last-stable-offset cause; no upstream issue found in faust-streaming/faust, nor for Tansu's
answer. The changes that would remove them: `end_offsets` in `AIOKafkaConsumerThread._highwaters`;
Tansu answering ListOffsets with its high watermark. Pinned by
tests/unit/test_faust_pitfalls.py and tests/integration/test_broker_offsets.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka.protocol.fetch import FetchRequest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

__all__ = ["ListOffsetsHighwaters", "fetched_ends"]

logger = structlog.get_logger(__name__)

_PROBE_BYTES = 1 << 20
_PROBE_WAIT_MS = 200


async def fetched_ends(
    client: Any, ends: Mapping[Any, int], isolation_level: int
) -> dict[Any, int]:
    """`ends` (ListOffsets answers per partition), each raised to the high watermark (the last
    stable offset under read_committed) that a fetch of the offset before it reports.

    For a broker whose ListOffsets answer lags its log (Tansu: base offset of the last batch +
    1). A partition whose probe fails keeps its ListOffsets answer (logged). `client` is an
    aiokafka `AIOKafkaClient`; keys are kept as given.
    """
    result = dict(ends)
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = {}
    keys: dict[tuple[str, int], Any] = {}
    for tp, end in ends.items():
        node = client.cluster.leader_for_partition(tp) if end > 0 else None
        if node is None or node < 0:
            continue
        keys[(tp.topic, tp.partition)] = tp
        by_node.setdefault(node, {}).setdefault(tp.topic, []).append(
            (tp.partition, end - 1, _PROBE_BYTES)
        )
    for node, topics in by_node.items():
        # min_bytes 1: Tansu answers a fetch that may return nothing with no partitions.
        request = FetchRequest(
            _PROBE_WAIT_MS, 1, _PROBE_BYTES, isolation_level, list(topics.items())
        )
        try:
            response = await client.send(node, request)
        except Exception as exc:  # the ListOffsets answers stand
            logger.warning("highwater_probe_failed", node=node, error=repr(exc))
            continue
        read_committed = isolation_level == 1 and response.API_VERSION >= 4
        for topic, partitions in response.topics:
            for partition, error_code, highwater, *rest in partitions:
                tp = keys.get((topic, partition))
                if tp is None or error_code != 0:
                    continue
                mark = rest[0] if read_committed else highwater
                if mark > result[tp]:
                    result[tp] = mark
    return result


class ListOffsetsHighwaters(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread answering highwaters from ListOffsets, raised to what a fetch
    reports (fixes 1 and 2)."""

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        consumer: Any = self._ensure_consumer()
        ends = await consumer.end_offsets(list(partitions))
        return await fetched_ends(consumer._client, ends, consumer._fetcher._isolation_level)
