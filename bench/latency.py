"""Latency at a rate, seen by a live consumer: the candidate runs on an empty input topic,
the harness produces `rate` events/s stamped with their send time, and a consumer of the
candidate's output topic, polling all along, takes each record's arrival time minus the
`observed_at` of the newest and of the oldest event behind it."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import data
from bench.measure import START_BOUND_S, Failed, _check_alive, _cleanup, _progress, _start, _stop
from bench.procs import Proc
from bench.roster import RunSpec

__all__ = ["latency_run", "summarise_latency"]

SKIP_S = 2.0  # the first seconds of the phase: the candidate's caches and the group settle
DRAIN_S = 3.0  # after the last send: > the flush interval, the last changes are out
CONSUMER_FETCH_WAIT_MS = 10  # the live consumer's own wait: small against what it measures


def _epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() * 1000


def behind(doc: dict[str, Any]) -> tuple[float | None, float | None, bool]:
    """(newest, oldest) observed ms of the events behind an output record, and whether it is
    a final (a window's close, not an update)."""
    if "emitted_at" in doc:  # our worker's insight record
        return _epoch_ms(doc["last_at"]), _epoch_ms(doc["first_at"]), bool(doc.get("final"))
    newest = doc.get("last_ms")
    oldest = doc.get("first_ms")
    return (
        None if newest is None else float(newest),
        None if oldest is None else float(oldest),
        False,
    )


async def _live(bootstrap: str, topic: str, stop: asyncio.Event) -> list[tuple[float, bytes]]:
    """(arrival epoch ms, value) of every record written to `topic` from now until `stop`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=CONSUMER_FETCH_WAIT_MS,
    )
    await consumer.start()
    got: list[tuple[float, bytes]] = []
    try:
        deadline = time.monotonic() + START_BOUND_S
        parts: set[int] = set()
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts and time.monotonic() > deadline:
                msg = f"output topic {topic} did not appear within {START_BOUND_S:.0f}s"
                raise Failed(msg)
            if not parts:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.time() * 1000
            for records in batches.values():
                got.extend((now, r.value) for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_run(spec: RunSpec, rate: float, seconds: float, keep: bool = False) -> dict[str, Any]:
    """One repeat: p50/p99 of arrival - newest and of arrival - oldest over the update
    records (finals are a window's close: counted apart) whose newest event was sent
    after the first SKIP_S seconds."""
    asyncio.run(data.create_topics(spec.bootstrap, [spec.input_topic], spec.partitions))
    procs = spec.processes()
    _start(procs)
    try:
        start_ms, last_ms, arrivals, processed = asyncio.run(_phase(spec, procs, rate, seconds))
        _check_alive(procs)
    finally:
        _stop(procs)
        _cleanup(spec, keep)
    newest_lat, oldest_lat, finals = [], [], 0
    for arrived, value in arrivals:
        newest, oldest, final = behind(orjson.loads(value))
        if newest is None or not start_ms + SKIP_S * 1000 <= newest <= last_ms:
            continue
        if final:
            finals += 1
            continue
        newest_lat.append(arrived - newest)
        if oldest is not None:
            oldest_lat.append(arrived - oldest)
    sent = round((last_ms - start_ms) / 1000 * rate) + 1
    out: dict[str, Any] = {
        "candidate": spec.candidate.name,
        "rate": rate,
        "seconds": seconds,
        "sent": sent,
        "processed": processed,
        "records": len(newest_lat),
        "finals": finals,
    }
    for name, values in (("newest", newest_lat), ("oldest", oldest_lat)):
        out[f"{name}_p50_ms"] = _percentile(values, 0.50) if values else None
        out[f"{name}_p99_ms"] = _percentile(values, 0.99) if values else None
    return out


async def _phase(
    spec: RunSpec, procs: list[Proc], rate: float, seconds: float
) -> tuple[int, int, list[tuple[float, bytes]], int]:
    await _warm_up(spec, procs)
    stop = asyncio.Event()
    live = asyncio.create_task(_live(spec.bootstrap, spec.output_topic, stop))
    processed_before = sum(r["count"] for r in _progress(procs))
    try:
        start_ms, last_ms = await data.produce_at_rate(
            spec.bootstrap, spec.input_topic, rate, seconds, seed=13
        )
        await asyncio.sleep(DRAIN_S)  # the tail of the output, not a wait for a condition
    finally:
        stop.set()
    arrivals = await live
    processed = sum(r["count"] for r in _progress(procs)) - processed_before
    return start_ms, last_ms, arrivals, processed


async def _warm_up(spec: RunSpec, procs: list[Proc], bound_s: float = START_BOUND_S) -> None:
    """Trickle events in until the candidate has processed one (it is assigned and ready)."""
    until = asyncio.Event()
    producer = asyncio.create_task(
        data.produce_at_rate(spec.bootstrap, spec.input_topic, 20, bound_s, until=until, seed=12)
    )
    deadline = time.monotonic() + bound_s
    try:
        while not any(r["count"] for r in _progress(procs)):
            _check_alive(procs)
            if time.monotonic() > deadline:
                msg = f"{spec.run_id}: no record processed within {bound_s:.0f}s"
                raise Failed(msg)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # let a second worker's rebalance settle
    finally:
        until.set()
        await producer


def summarise_latency(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and min-max) over the repeats of each percentile."""
    out: dict[str, Any] = {"repeats": len(repeats), "runs": repeats}
    for key in ("newest_p50_ms", "newest_p99_ms", "oldest_p50_ms", "oldest_p99_ms"):
        values = [r[key] for r in repeats if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
            out[f"{key}_min"] = min(values)
            out[f"{key}_max"] = max(values)
    out["behind"] = any(r["processed"] < 0.99 * r["sent"] for r in repeats)
    return out
