"""The raw ceiling of the minimal set: a hand-written aiokafka consumer that does the same
work as our worker's minimal set, and nothing more. Per message: decode (orjson) and
validate (the contract's rules, `validation.py`); fold into count/sum/min/max per (subject,
metric, 60 s tumbling window); per input partition, a watermark (newest event time minus
the 30 s grace) closes windows, whose finals go out in one batch of sends, awaited before
the batch's offsets are committed. Late events (their window closed by their partition's
watermark) are dropped. No state persistence, no dedup, no dead letters, no changes stream.

With `groups` it also folds the group scope as our worker does (per (group_id, metric) over
the group's subjects), in this one process: no keyed hop, so it cannot scale out as our
worker does. A group's subjects are on every partition, so group windows close at the
lowest of the assigned partitions' watermarks, once every one of them has been read.
Usage: raw_finals.py BOOTSTRAP INPUT GROUP OUTPUT [groups]
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from progress import Progress
from validation import check

WINDOW_MS = 60_000
GRACE_MS = 30_000

# window start -> (subject or group id, metric) -> [count, sum, min, max, first, last]:
# one per partition for the subject scope, one for the group scope
State = dict[int, dict[tuple[str, str], list[float]]]


def fold(state: State, entity: str, metric: str, value: float, at: int) -> None:
    start = at - at % WINDOW_MS
    window = state.get(start)
    if window is None:
        window = state[start] = {}
    key = (entity, metric)
    agg = window.get(key)
    if agg is None:
        window[key] = [1, value, value, value, at, at]
        return
    agg[0] += 1
    agg[1] += value
    if value < agg[2]:
        agg[2] = value
    if value > agg[3]:
        agg[3] = value
    if at < agg[4]:
        agg[4] = at
    if at > agg[5]:
        agg[5] = at


def close(state: State, watermark: int, scope: str = "subject") -> list[tuple[bytes, bytes]]:
    """(key, value) of the final of every window whose end is at or before `watermark`;
    those windows leave the state."""
    out = []
    now = time.time() * 1000
    entity_field = "subject_id" if scope == "subject" else "group_id"
    for start in sorted(s for s in state if s + WINDOW_MS <= watermark):
        for (entity, metric), agg in state.pop(start).items():
            count, total, low, high, first, last = agg
            record = {
                "scope": scope,
                entity_field: entity,
                "metric": metric,
                "start": start,
                "end": start + WINDOW_MS,
                "final": True,
                "count": int(count),
                "sum": total,
                "min": low,
                "max": high,
                "first_ms": first,
                "last_ms": last,
                "emitted_ms": now,
            }
            out.append((entity.encode(), orjson.dumps(record)))
    return out


async def run(bootstrap: str, topic: str, group: str, output: str, groups: bool) -> None:
    progress = Progress.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256_000)
    await consumer.start()
    await producer.start()
    states: dict[int, State] = {}
    newest: dict[int, int] = {}
    group_state: State = {}
    group_closed = -(1 << 62)  # group windows ending at or before it are closed
    loads = orjson.loads
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                continue
            progress.mark_first()
            sends = []
            offsets = {}
            count = 0
            for tp, records in batches.items():
                if not records:
                    continue
                state = states.setdefault(tp.partition, {})
                seen = newest.get(tp.partition, -(1 << 62))
                for record in records:
                    verdict = check(record.value, loads)
                    if verdict is None:
                        continue
                    doc, at = verdict
                    start = at - at % WINDOW_MS
                    if start + WINDOW_MS <= seen - GRACE_MS:
                        continue  # late: its window is closed
                    metric, value = doc["metric"], float(doc["value"])
                    fold(state, doc["subject_id"], metric, value, at)
                    group_id = doc.get("group_id") if groups else None
                    if group_id is not None and start + WINDOW_MS > group_closed:
                        fold(group_state, group_id, metric, value, at)
                    if at > seen:
                        seen = at
                newest[tp.partition] = seen
                for key, value in close(state, seen - GRACE_MS):
                    sends.append(await producer.send(output, value, key=key))
                offsets[TopicPartition(tp.topic, tp.partition)] = records[-1].offset + 1
                count += len(records)
            assigned = {tp.partition for tp in consumer.assignment()}
            if groups and assigned and assigned <= newest.keys():
                group_closed = max(group_closed, min(newest[p] for p in assigned) - GRACE_MS)
                for key, value in close(group_state, group_closed, "group"):
                    sends.append(await producer.send(output, value, key=key))
            if sends:
                await asyncio.gather(*sends)  # every final delivered before the commit
            await consumer.commit(offsets)
            progress.add(count)
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    bootstrap, topic, group, output = sys.argv[1:5]
    asyncio.run(run(bootstrap, topic, group, output, sys.argv[5:6] == ["groups"]))
