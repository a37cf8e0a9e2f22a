"""State at scale: RSS of our worker holding K live keys, and the time a fresh replica takes
to recover that state from the changelog."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.measure import Failed, _check_alive, _cleanup, scrape
from bench.procs import Proc, peak_rss_kb
from bench.roster import CANDIDATES, RunSpec

__all__ = ["recovery_run"]

_SETTLE_S = 12.0
_KEYS = re.compile(r'^insights_state_keys\{table="rolling-state"\} (\S+)$', re.MULTILINE)


def _state_keys(proc: Proc) -> int:
    match = _KEYS.search(scrape(proc.ports["metrics"])[1])
    return int(float(match.group(1))) if match else 0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wait(what: str, proc: Proc, check: Any, bound_s: float) -> float:
    start = time.time()
    while not check():
        _check_alive([proc])
        if time.time() - start > bound_s:
            msg = f"recovery: {what} not reached within {bound_s:.0f}s (log {proc.log_path})"
            raise Failed(msg)
        time.sleep(0.1)
    return time.time()


def recovery_run(
    bootstrap: str,
    run_id: str,
    workdir: Path,
    keys: int,
    guarantee: str = "at_least_once",
    keep: bool = False,
    code: Path | None = None,
) -> dict[str, Any]:
    """Load `keys` keys on the default windows, measure RSS, SIGTERM, start a fresh worker
    (empty data dir, new ports), time spawn -> /readyz 200 -> all keys back in state."""
    topic = f"{run_id}-in"
    start_ms = int(time.time() * 1000) - 5_000
    asyncio.run(data.create_topics(bootstrap, [topic], 8))
    asyncio.run(data.preload(bootstrap, topic, data.recovery_observations(keys, start_ms)))
    candidate = CANDIDATES["insights-default"]
    first = RunSpec(
        candidate,
        bootstrap,
        topic,
        run_id,
        workdir / "first",
        target=keys,
        guarantee=guarantee,
        code=code,
        keys=keys,
    )
    [proc] = first.processes()
    proc.start()
    result: dict[str, Any] = {"keys": keys}
    try:
        bound = 120 + keys / 200
        _wait(
            "all keys processed",
            proc,
            lambda: (proc.progress() or {}).get("count", 0) >= keys,
            bound,
        )
        _wait("state_keys gauge", proc, lambda: _state_keys(proc) >= keys, 30)
        result["state_keys"] = _state_keys(proc)
        result["burst_rss_mb"] = _rss_kb(proc.pid) / 1024  # right after the last key's flush
        result["peak_rss_mb"] = peak_rss_kb(proc.pid) / 1024
        # Holding the keys, settled: the burst's garbage collected and the heap trimmed
        # (`streams/runtime/heap.py`, at most every 10 s); also a commit interval for the changelog.
        time.sleep(_SETTLE_S)
        result["rss_mb"] = _rss_kb(proc.pid) / 1024
        result["first_exit_code"] = proc.stop(bound_s=60)
        second = RunSpec(
            candidate,
            bootstrap,
            topic,
            run_id,
            workdir / "second",
            target=keys,
            guarantee=guarantee,
            code=code,
            keys=keys,
        )
        [fresh] = second.processes()
        fresh.start()
        try:
            t_ready = _wait(
                "/readyz 200", fresh, lambda: scrape(fresh.ports["web"], "/readyz")[0] == 200, 300
            )
            t_state = _wait("keys restored", fresh, lambda: _state_keys(fresh) >= keys, 120)
            result["ready_s"] = t_ready - fresh.started_at
            result["state_restored_s"] = t_state - fresh.started_at
            result["restored_keys"] = _state_keys(fresh)
            result["fresh_rss_mb"] = _rss_kb(fresh.pid) / 1024
        finally:
            fresh.stop()
    finally:
        proc.stop()
        _cleanup(first, keep)
    return result
