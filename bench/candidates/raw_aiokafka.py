"""The raw limits: a hand-written aiokafka consumer, in two shapes.

`consume`: consume and decode (orjson) every record, nothing else (a value that is not JSON
is passed over).
`aggregate`: consume, decode and check against the contract (validation.py: an invalid
message is skipped), fold into a dict keyed by (subject, metric, 60 s window of the event
time from `observed_at`, RFC 3339 or epoch ms) holding count/sum/min/max, and send one
record per event (the updated aggregate: subject_id, metric, start, count, sum, min, max,
last_ms, emitted_ms; times in epoch ms) with a plain aiokafka producer. No dedup (a re-sent
event counts again), no lateness rule (an event hours late updates its old window, which
is never closed or dropped), no state persistence, no delivery guarantee.
Progress counts every consumed record, skipped ones included.
Usage: raw_aiokafka.py consume|aggregate BOOTSTRAP INPUT GROUP OUTPUT TARGET
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from progress import Progress
from validation import check

WINDOW_MS = 60_000


async def run(mode: str, bootstrap: str, topic: str, group: str, output: str, target: int) -> None:
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
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256_000)
    await consumer.start()
    await producer.start()
    state: dict[tuple[str, str, int], dict[str, float]] = {}
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                if not records:
                    continue
                progress.mark_first()
                for record in records:
                    if mode != "aggregate":
                        try:  # noqa: SIM105 (free unless it raises, unlike a `with`)
                            orjson.loads(record.value)
                        except orjson.JSONDecodeError:
                            pass
                        continue
                    checked = check(record.value, orjson.loads)
                    if checked is None:
                        progress.bump("skipped")
                        continue
                    doc, at = checked
                    value = doc["value"]
                    key = (doc["subject_id"], doc["metric"], at - at % WINDOW_MS)
                    agg = state.get(key)
                    if agg is None:
                        agg = state[key] = {
                            "count": 0, "sum": 0.0, "min": value, "max": value, "last_ms": at,
                        }  # fmt: skip
                    agg["count"] += 1
                    agg["sum"] += value
                    agg["min"] = min(agg["min"], value)
                    agg["max"] = max(agg["max"], value)
                    agg["last_ms"] = max(agg["last_ms"], at)
                    out = {
                        "subject_id": key[0], "metric": key[1], "start": key[2], **agg,
                        "emitted_ms": time.time() * 1000,
                    }  # fmt: skip
                    await producer.send(output, orjson.dumps(out), key=record.key)
                if mode == "aggregate" and progress.count + len(records) >= target:
                    await producer.flush()  # done means sent, not just buffered
                progress.add(len(records))
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    mode, bootstrap, topic, group, output, target = sys.argv[1:7]
    asyncio.run(run(mode, bootstrap, topic, group, output, int(target)))
