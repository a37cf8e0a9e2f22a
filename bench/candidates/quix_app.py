"""Quix Streams doing the minimal set: per (subject, metric) a 60 s tumbling window (grace
30 s, event time from `observed_at`) with count/sum/min/max, emitted with `.final()` or
`.current()`. Runs in bench/.venv.

The input is keyed by subject (the product's contract), so like our worker it repartitions
by (subject, metric) with `group_by` before windowing. One `.reduce()` keeps the four
aggregates (and the newest event time, for the latency figure) in one state value; windows
close per partition (`closing_strategy="partition"`), as our watermark does.
Usage: quix_app.py final|current BOOTSTRAP INPUT GROUP OUTPUT STATE_DIR GUARANTEE
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from progress import Progress
from quixstreams import Application

WINDOW_MS = 60_000
GRACE_MS = 30_000


def initializer(doc: dict[str, Any]) -> dict[str, Any]:
    value = doc["value"]
    return {"count": 1, "sum": value, "min": value, "max": value, "last_ms": doc["observed_at"]}


def reducer(agg: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    value = doc["value"]
    agg["count"] += 1
    agg["sum"] += value
    if value < agg["min"]:
        agg["min"] = value
    if value > agg["max"]:
        agg["max"] = value
    if doc["observed_at"] > agg["last_ms"]:
        agg["last_ms"] = doc["observed_at"]
    return agg


def main() -> None:
    mode, bootstrap, topic, group, output, state_dir, guarantee = sys.argv[1:8]
    progress = Progress.from_env()
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee="exactly-once" if guarantee == "exactly_once" else "at-least-once",
        loglevel=os.environ.get("QUIX_LOGLEVEL", "WARNING"),
        # Group timing as our worker's (INSIGHTS_SESSION_TIMEOUT 10s): a faster first join.
        consumer_extra_config={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000},
    )
    source = app.topic(
        topic,
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ts_type: value["observed_at"],
    )
    sink = app.topic(output, value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.update(lambda doc: progress.mark_first())  # the first input record is in
    sdf = sdf.group_by(lambda doc: f"{doc['subject_id']}|{doc['metric']}", name="subject-metric")
    sdf = sdf.update(lambda doc: progress.add(1))
    window = sdf.tumbling_window(WINDOW_MS, grace_ms=GRACE_MS).reduce(reducer, initializer)
    if mode == "final":
        sdf = window.final(closing_strategy="partition")
    else:
        sdf = window.current(closing_strategy="partition")
    sdf = sdf.apply(
        lambda w: {
            **w["value"],
            "start": w["start"],
            "end": w["end"],
            "emitted_ms": time.time() * 1000,
        }
    )
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
