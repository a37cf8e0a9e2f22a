"""Quix Streams doing the minimal set: a 60 s tumbling window (grace 30 s, event time from
`observed_at`) with count/sum/min/max per (subject, metric), emitted with `.final()` or
`.current()`. Runs in bench/.venv.

Two keyings:
- `group_by`: re-keyed by (subject, metric) with `group_by`, which sends every event over a
  repartition topic (a produce and a consume each), then one window per key. What a Quix
  user writes for input keyed any other way; here, next to `direct`, it shows the hop's cost.
  It fetches 64 KiB per partition (see `main`): a backlog read a partition at a time breaks
  its windows.
- `direct`: the input is keyed by `subject_id` (as the bench's producer keys it), so the
  window runs where the record was read, no repartition: one window per subject whose one
  value holds every metric's aggregates. Like our worker, which folds subject-keyed
  co-partitioned input in the partition that read it (its keyed topic is crossed only by
  records keyed to another partition: group rollups, other keyings or partition counts).

Either way one `.reduce()` keeps the aggregates (and the newest event time, for the latency
figure) in one state value; windows close per partition (`closing_strategy="partition"`), as
our watermark does. A late event (its window closed) is dropped by Quix, not logged.

Input: a custom deserializer decodes (orjson, as Quix's json one) and checks each message
against the contract (validation.py), turning `observed_at` (RFC 3339 or epoch ms) into
epoch ms; an invalid message is skipped (`IgnoreMessage`, as Quix documents) and counted.
No dedup: a re-sent event counts again. The harness's progress counts every input message:
a skipped one when it is skipped, a valid one as it reaches the window (for `group_by`,
after the hop).

Output values: `group_by`: {subject_id, metric, start, end, count, sum, min, max, last_ms,
emitted_ms}; `direct`: {subject_id, start, end, metrics: {metric: {count, sum, min, max}},
last_ms, emitted_ms}. Times in epoch ms.
Usage: quix_app.py final|current BOOTSTRAP INPUT GROUP OUTPUT STATE_DIR GUARANTEE group_by|direct
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import orjson
from progress import Progress
from quixstreams import Application
from quixstreams.models.serializers import Deserializer, IgnoreMessage
from validation import check

WINDOW_MS = 60_000
GRACE_MS = 30_000

progress = Progress.from_env()


class Observations(Deserializer):
    """JSON bytes to a valid observation (its `observed_at` as epoch ms), or IgnoreMessage."""

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        progress.mark_first()  # the first input record is in
        checked = check(value, orjson.loads)
        if checked is None:
            progress.add(1)  # skipped: done with it
            progress.bump("skipped")
            raise IgnoreMessage
        doc, ms = checked
        doc["observed_at"] = ms
        return doc


def _late(*args: Any) -> bool:
    progress.bump("late")
    return False  # Quix would log a warning per late event


# group_by: one (subject, metric) per window value.


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


def by_metric(w: dict[str, Any], key: str, timestamp: int, headers: Any) -> dict[str, Any]:
    subject_id, _, metric = key.rpartition("|")
    return {
        "subject_id": subject_id,
        "metric": metric,
        **w["value"],
        "start": w["start"],
        "end": w["end"],
        "emitted_ms": time.time() * 1000,
    }


# direct: one subject per window value, {"m": {metric: [count, sum, min, max]}, "t": last_ms}
# in state (lists: less to serialise on each update than dicts).


def subject_initializer(doc: dict[str, Any]) -> dict[str, Any]:
    value = doc["value"]
    return {"m": {doc["metric"]: [1, value, value, value]}, "t": doc["observed_at"]}


def subject_reducer(agg: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    value = doc["value"]
    figures = agg["m"].get(doc["metric"])
    if figures is None:
        agg["m"][doc["metric"]] = [1, value, value, value]
    else:
        figures[0] += 1
        figures[1] += value
        if value < figures[2]:
            figures[2] = value
        if value > figures[3]:
            figures[3] = value
    if doc["observed_at"] > agg["t"]:
        agg["t"] = doc["observed_at"]
    return agg


def by_subject(w: dict[str, Any], key: bytes, timestamp: int, headers: Any) -> dict[str, Any]:
    value = w["value"]
    return {
        "subject_id": key.decode(),
        "start": w["start"],
        "end": w["end"],
        "metrics": {
            metric: {"count": c, "sum": s, "min": lo, "max": hi}
            for metric, (c, s, lo, hi) in value["m"].items()
        },
        "last_ms": value["t"],
        "emitted_ms": time.time() * 1000,
    }


def main() -> None:
    mode, bootstrap, topic, group, output, state_dir, guarantee, keying = sys.argv[1:9]
    # Group timing as our worker's (INSIGHTS_SESSION_TIMEOUT 10s): a faster first join.
    consumer: dict[str, Any] = {
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # Our worker's fetch wait (INSIGHTS_FETCH_MAX_WAIT, 100 ms): the same for every
        # candidate compared (librdkafka's default is 500 ms).
        "fetch.wait.max.ms": 100,
    }
    if keying != "direct":
        # After the hop a window's partition time is that of whichever input partition was
        # read last. On a backlog librdkafka hands out up to max.partition.fetch.bytes
        # (1 MiB: a whole input partition here) of one partition at a time, so that time
        # jumps back by a minute: the windows of the other input partitions' events had
        # closed already; Quix opens them again (not late by its rule) and never closes
        # them: most finals were never sent and changes restarted from count 1. 64 KiB per
        # partition interleaves the input partitions finely enough. Seen on the embedded
        # broker with the bench's names (`bench-*-in`, sorting before Quix's `repartition__`
        # topic); with an input named after it (`shape-in`) 64 KiB did not help, not
        # understood. The direct keying has no such hop: each window sees one partition.
        consumer["max.partition.fetch.bytes"] = 64 * 1024
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee="exactly-once" if guarantee == "exactly_once" else "at-least-once",
        loglevel=os.environ.get("QUIX_LOGLEVEL", "WARNING"),
        consumer_extra_config=consumer,
    )
    source = app.topic(
        topic,
        value_deserializer=Observations(),
        timestamp_extractor=lambda value, headers, ts, ts_type: value["observed_at"],
    )
    sink = app.topic(output, value_serializer="json")
    sdf = app.dataframe(source)
    if keying == "direct":
        sdf = sdf.update(lambda doc: progress.add(1))
        window = sdf.tumbling_window(WINDOW_MS, grace_ms=GRACE_MS, on_late=_late).reduce(
            subject_reducer, subject_initializer
        )
        shape = by_subject
    else:
        sdf = sdf.group_by(lambda d: f"{d['subject_id']}|{d['metric']}", name="subject-metric")
        sdf = sdf.update(lambda doc: progress.add(1))
        window = sdf.tumbling_window(WINDOW_MS, grace_ms=GRACE_MS, on_late=_late).reduce(
            reducer, initializer
        )
        shape = by_metric
    if mode == "final":
        sdf = window.final(closing_strategy="partition")
    else:
        sdf = window.current(closing_strategy="partition")
    sdf = sdf.apply(shape, metadata=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
