"""The raw ceiling of the minimal set: a hand-written aiokafka consumer that does the same
work as our worker's minimal set, and nothing more. Per message: decode (orjson) and
validate (the contract's rules, `validation.py`); fold into count/sum/min/max per (subject,
metric, 60 s tumbling window); per input partition, a watermark (newest event time minus
the 30 s grace) closes windows, whose finals go out in one batch of sends, awaited before
the batch's offsets are committed. Late events (their window closed) are dropped. No state
persistence, no dedup, no dead letters, no changes stream.
Usage: raw_finals.py BOOTSTRAP INPUT GROUP OUTPUT
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from progress import Progress
from validation import check

WINDOW_MS = 60_000
GRACE_MS = 30_000

# per partition: window start -> (subject, metric) -> [count, sum, min, max, first, last]
State = dict[int, dict[tuple[str, str], list[float]]]


def fold(state: State, doc: dict[str, Any], at: int, closed_before: int) -> None:
    start = at - at % WINDOW_MS
    if start + WINDOW_MS <= closed_before:
        return  # late: its window is closed
    window = state.get(start)
    if window is None:
        window = state[start] = {}
    key = (doc["subject_id"], doc["metric"])
    value = float(doc["value"])
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


def close(state: State, watermark: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the final of every window whose end is at or before `watermark`;
    those windows leave the state."""
    out = []
    now = time.time() * 1000
    for start in sorted(s for s in state if s + WINDOW_MS <= watermark):
        for (subject, metric), agg in state.pop(start).items():
            count, total, low, high, first, last = agg
            record = {
                "subject_id": subject,
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
            out.append((subject.encode(), orjson.dumps(record)))
    return out


async def run(bootstrap: str, topic: str, group: str, output: str) -> None:
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
                    fold(state, doc, at, seen - GRACE_MS)
                    if at > seen:
                        seen = at
                newest[tp.partition] = seen
                for key, value in close(state, seen - GRACE_MS):
                    sends.append(await producer.send(output, value, key=key))
                offsets[TopicPartition(tp.topic, tp.partition)] = records[-1].offset + 1
                count += len(records)
            if sends:
                await asyncio.gather(*sends)  # every final delivered before the commit
            await consumer.commit(offsets)
            progress.add(count)
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    bootstrap, topic, group, output = sys.argv[1:5]
    asyncio.run(run(bootstrap, topic, group, output))
