"""Our worker (`observer-insights worker`), plus a progress hook for the harness.

The hook wraps methods at class level and changes nothing else: the ingest agent's batch
handler marks the first input record; after each fold of a partition (folded into state,
state written, outputs sent: by the rolling agent, or by the ingest agent for co-partitioned
records) the observations it counted are added. Per fold, not per event. Settings
come from the environment exactly as for `observer-insights worker`.
BENCH_PROFILE=path writes a cProfile of the whole process there on exit.
BENCH_TRACEMALLOC=path traces allocations (slow, about twice the memory) and writes the
biggest live ones, by allocating call site, there on exit.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from progress import Progress

import streams.cli
from agents.ingest import Ingest
from agents.rolling.agent import RollingEngine
from streams.cli import main
from streams.settings import load_settings

progress = Progress.from_env()
_ingest_process = Ingest.process
_observe_latency = RollingEngine._observe_latency


async def _ingest(self: Ingest, events: list[Any], on_done: Any = None) -> None:
    progress.mark_first()
    await _ingest_process(self, events, on_done)


def _observe(self: RollingEngine, sources_ms: list[int]) -> None:
    # Called once per fold, after its flush, with one entry per observation it counted:
    # the only per-observation figure the engine hands out.
    _observe_latency(self, sources_ms)
    progress.add(len(sources_ms))


Ingest.process = _ingest  # type: ignore[method-assign]
RollingEngine._observe_latency = _observe  # type: ignore[method-assign]

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
