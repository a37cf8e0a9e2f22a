"""The naive Faust agent: what the Faust docs lead to. One event at a time: decode (json)
and check it against the contract (validation.py: an invalid message is skipped), read and
write a tumbling windowed table (60 s, event time = the record's timestamp, which the bench
sets to `observed_at`), and send one record per event: the updated aggregate, {key,
subject_id, metric, start, end, count, sum, min, max, last_ms (newest `observed_at`),
emitted_ms}, times in epoch ms. No dedup (a re-sent event counts again) and no lateness
rule: an event hours late updates its old window (Faust keeps a window until `expires`
past the partition's newest record time, then drops it; an update after that starts it
again). Progress counts every consumed message, skipped ones included. Runs in the
project's .venv.
Usage: faust_naive.py BOOTSTRAP INPUT GROUP OUTPUT DATA_DIR PARTITIONS
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import faust
from progress import Progress
from validation import check

WINDOW_MS = 60_000


def main() -> None:
    bootstrap, topic, group, output, data_dir, partitions = sys.argv[1:7]
    progress = Progress.from_env()
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=int(partitions),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Group timing as our worker's (INSIGHTS_SESSION_TIMEOUT 10s): a faster first join.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_rebalance_timeout=6.0,
        autodiscover=False,
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    sink = app.topic(output, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = (
        app.Table("aggregates", default=dict, partitions=int(partitions))
        .tumbling(timedelta(milliseconds=WINDOW_MS), expires=timedelta(minutes=2))
        .relative_to_stream()
    )
    window = table.table.window  # the TumblingWindow under the wrapper

    @app.agent(source)
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            checked = check(event.value, json.loads)
            if checked is None:
                progress.add(1)
                progress.bump("skipped")
                continue
            doc, observed_ms = checked
            key = f"{doc['subject_id']}|{doc['metric']}"
            value = doc["value"]
            agg = table[key].current() or {
                "count": 0, "sum": 0.0, "min": value, "max": value, "last_ms": 0,
            }  # fmt: skip
            agg = {
                "count": agg["count"] + 1,
                "sum": agg["sum"] + value,
                "min": min(agg["min"], value),
                "max": max(agg["max"], value),
                "last_ms": max(agg["last_ms"], observed_ms),
            }
            table[key] = agg
            # The window just written (Faust's ranges are in seconds and end 0.1 s early).
            start_ms = round(window.current(event.message.timestamp)[0] * 1000)
            out = {
                "key": key, "subject_id": doc["subject_id"], "metric": doc["metric"],
                "start": start_ms, "end": start_ms + WINDOW_MS, **agg,
                "emitted_ms": time.time() * 1000,
            }  # fmt: skip
            await sink.send(key=key.encode(), value=json.dumps(out).encode())
            progress.add(1)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
