"""Demo load generator for `docker compose --profile demo`: observations at a steady rate.

Runs in the worker image (aiokafka is there). Every 200th message is invalid on purpose, so
the dead-letter path has traffic too. Settings: KAFKA_BOOTSTRAP_SERVERS, INSIGHTS_INPUT_TOPIC,
LOADGEN_RATE (messages/s), LOADGEN_SUBJECTS, LOADGEN_OBSERVERS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer


def _observation(n: int, subjects: int, observers: int) -> dict[str, object]:
    subject = n % subjects
    return {
        "event_id": f"loadgen-{os.getpid()}-{n}",
        "observer_id": f"observer-{random.randrange(observers)}",
        "subject_id": f"subject-{subject}",
        "metric": "temperature",
        "value": round(20 + subject % 7 + random.gauss(0, 0.5), 3),
        "observed_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "group_id": f"site-{subject % 4}",
    }


async def main() -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    topic = os.environ.get("INSIGHTS_INPUT_TOPIC", "observations")
    rate = max(1.0, float(os.environ.get("LOADGEN_RATE", "50")))
    subjects = int(os.environ.get("LOADGEN_SUBJECTS", "100"))
    observers = int(os.environ.get("LOADGEN_OBSERVERS", "5"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    n, started = 0, time.monotonic()
    try:
        while not stop.is_set():
            if n % 200 == 199:
                value = json.dumps({"event_id": f"loadgen-bad-{n}", "value": "hot"}).encode()
                await producer.send(topic, value=value)
            else:
                record = _observation(n, subjects, observers)
                key = str(record["subject_id"]).encode()
                await producer.send(topic, key=key, value=json.dumps(record).encode())
            n += 1
            if n % 1000 == 0:
                print(json.dumps({"event": "loadgen_progress", "sent": n}), flush=True)
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
