"""Our worker (`observer-insights worker`), plus a progress hook for the harness.

The hook wraps methods at class level and changes nothing else: the ingest agent's batch
handler marks the first input record; progress counts input messages, as the harness's
target does: a message dead-lettered by ingest (not valid) when its letter is sent, and a
valid one when its subject record has been through a flush of its keyed partition (folded
into state, outputs sent, state written when due: after the fold by the ingest agent for
co-partitioned records or by the rolling agent for those from the keyed topic, or by the
timer's flush), whatever the fold made of it (counted, duplicate, late). Group records are
not counted: each valid message has exactly one subject record. Per flush, not per event.
Counters (in the progress JSON) show the path: `keyed_records` went over the keyed topic,
`folded_records` were folded in (both scopes; the difference was folded in directly).
Settings come from the environment exactly as for `observer-insights worker`.
BENCH_PROFILE=path writes a cProfile of the whole process there on exit.
BENCH_TRACEMALLOC=path traces allocations (slow, about twice the memory) and writes the
biggest live ones, by allocating call site, there on exit.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import os
import sys
import time
import tracemalloc
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from progress import Progress

import streams.cli
from agents.ingest import Ingest
from agents.rolling.agent import RollingEngine
from agents.rolling.state import PartitionState
from streams.cli import main

try:
    from streams.runtime.settings import load_settings
except ImportError:  # `--code REV` of a revision before streams/runtime/ (issue 25)
    from streams.settings import load_settings  # type: ignore[import-not-found,no-redef]

progress = Progress.from_env()
_ingest_process = Ingest.process
_dead_letter = Ingest._dead_letter
_send = Ingest._send
_fold = RollingEngine.fold
_flush = RollingEngine._flush
_state_for = RollingEngine.state_for
_folding: ContextVar[int] = ContextVar("bench_folding", default=0)  # subject records
_unflushed: dict[int, int] = {}  # keyed partition -> input messages folded in, not flushed


async def _ingest(self: Ingest, events: list[Any], on_done: Any = None) -> None:
    progress.mark_first()
    await _ingest_process(self, events, on_done)


async def _lettered(self: Ingest, message: Any, failure: Any, headers: Any) -> Any:
    delivery = await _dead_letter(self, message, failure, headers)
    progress.add(1)
    progress.bump("ingest_dead_letters")
    return delivery


async def _sent(self: Ingest, source: int, destination: int, items: list[Any], report: Any) -> Any:
    progress.bump("keyed_records", len(items))
    return await _send(self, source, destination, items, report)


async def _folded(
    self: RollingEngine, partition: int, chunks: list[Any], *, defer: bool = False
) -> bool:
    progress.bump("folds")
    records = subjects = 0
    for items, _, _ in chunks:
        records += len(items)
        subjects += [record.scope for record, _ in items].count("subject")
    progress.bump("folded_records", records)
    token = _folding.set(subjects)  # taken by `_state` once the fold has the partition
    try:
        return await _fold(self, partition, chunks, defer=defer)
    finally:
        _folding.reset(token)


def _state(self: RollingEngine, partition: int) -> Any:
    # A fold looks its state up under the partition's flush lock, after deciding to take
    # its records (it refuses them all when the partition is not held here) and before
    # offering them: what it brings is then unflushed, in the order the flushes see it.
    subjects = _folding.get()
    if subjects:
        _folding.set(0)
        _unflushed[partition] = _unflushed.get(partition, 0) + subjects
    return _state_for(self, partition)


async def _flushed(
    self: RollingEngine, partition: int, state: Any, *, persist: bool = False
) -> bool:
    done = _unflushed.pop(partition, 0)  # what this flush publishes, as it takes its changes
    flushed = await _flush(self, partition, state, persist=persist)
    if flushed and done:
        progress.add(done)
    return flushed


def _counting(name: str, method: Any, size: Any = len) -> Any:
    """`method`, adding the size of what it returns to `progress.counters[name]`."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        progress.bump(name, size(result))
        return result

    return counted


def _count_yielded(name: str, method: Any) -> Any:
    """`method` (a generator), counting what it yields into `progress.counters[name]`."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        for item in method(*args, **kwargs):
            progress.bump(name)
            yield item

    return counted


Ingest.process = _ingest  # type: ignore[method-assign]
Ingest._dead_letter = _lettered  # type: ignore[method-assign]
Ingest._send = _sent  # type: ignore[method-assign]
RollingEngine.fold = _folded  # type: ignore[method-assign]
RollingEngine._flush = _flushed  # type: ignore[method-assign]
RollingEngine.state_for = _state  # type: ignore[method-assign]
# Work per run, for comparing runs (the JSON has them per process): changes and finals
# made, changelog writes, folds.
PartitionState.take_changes = _count_yielded("changes", PartitionState.take_changes)  # type: ignore[method-assign]
PartitionState.take_finals = _counting("finals", PartitionState.take_finals)  # type: ignore[method-assign]
PartitionState.take_persist = _counting(  # type: ignore[method-assign]
    "changelog_writes", PartitionState.take_persist, lambda result: len(result[0])
)
_gc_started: list[float] = []


def _time_collections(phase: str, info: dict[str, int]) -> None:
    """Collector runs and their milliseconds per generation, into `progress.counters`."""
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
        return
    if progress.first is None or not _gc_started:
        return  # start-up: not part of the run
    generation = info["generation"]
    ms = (time.perf_counter() - _gc_started[0]) * 1000
    progress.bump(f"gc{generation}")
    progress.bump(f"gc{generation}_ms", round(ms))


gc.callbacks.append(_time_collections)
_tick = RollingEngine.tick


async def _timed_tick(self: RollingEngine) -> None:
    """The flush timer's runs during the run, and their milliseconds (coalesced changes
    go out once per run of it)."""
    started = time.perf_counter()
    await _tick(self)
    if progress.first is not None:
        progress.bump("ticks")
        progress.bump("tick_ms", round((time.perf_counter() - started) * 1000))


RollingEngine.tick = _timed_tick  # type: ignore[method-assign]

# Work-around: with INSIGHTS_WINDOWS in the process environment, pydantic-settings' own
# environment source JSON-decodes it (the field is a tuple) and fails on `tumbling:60s`.
# The harness passes it as BENCH_INSIGHTS_WINDOWS; it reaches load_settings() by argument.
_windows = os.environ.pop("BENCH_INSIGHTS_WINDOWS", None)
if _windows:
    streams.cli.load_settings = lambda: load_settings({**os.environ, "INSIGHTS_WINDOWS": _windows})  # type: ignore[assignment]


def _write_allocations(path: str) -> None:
    snapshot = tracemalloc.take_snapshot()
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines = [f"live traced: {total / 1e6:.1f} MB"]
    for stat in snapshot.statistics("traceback")[:25]:
        lines.append(f"{stat.size / 1e6:8.1f} MB {stat.count:9,} blocks")
        lines.extend(f"      {frame}" for frame in stat.traceback.format(most_recent_first=True))
    Path(path).write_text("\n".join(lines) + "\n")


if os.environ.get("BENCH_TRACEMALLOC"):
    tracemalloc.start(4)
    atexit.register(_write_allocations, os.environ["BENCH_TRACEMALLOC"])

if __name__ == "__main__":
    sys.argv = ["observer-insights", "worker"]
    profile_path = os.environ.get("BENCH_PROFILE")
    if not profile_path:
        main()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)
