"""One measured run of a candidate: throughput on the preloaded input, or latency at a rate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data
from bench.check import verify
from bench.procs import Proc, cpu_seconds, peak_rss_kb
from bench.roster import BENCH_PY, RunSpec
from bench.truth import Truth

__all__ = ["Failed", "Outcome", "Steady", "scrape", "throughput_run"]

POLL_S = 0.05
PY_SPY = BENCH_PY.parent / "py-spy"
START_BOUND_S = 120.0  # a candidate must process its first record within this
MIN_RATE = 200.0  # ... and then at least this many records per second


class Failed(Exception):
    """A run that did not finish: the message says why and where its log is."""


@dataclass
class Span:
    """Events processed over some seconds, and the CPU it took (per 100k events)."""

    events: int
    seconds: float
    cpu_s: float  # the candidate's processes
    broker_cpu_s: float | None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu_s / self.events * 100_000

    @property
    def broker_cpu_per_100k(self) -> float | None:
        if self.broker_cpu_s is None:
            return None
        return self.broker_cpu_s / self.events * 100_000


@dataclass
class Steady(Span):
    """The span in which a run went from 10% to 90% of its target: start-up, warm-up and the
    last windows' finals left out. Rates from the harness's samples of the candidates'
    progress files (each rewritten every 100 ms), not from one first and one last time."""


@dataclass
class Outcome(Span):
    """What one run measured: its whole span (first record in -> last record processed)."""

    candidate: str
    workers: int
    startup_s: float  # process start -> first record in
    peak_rss_mb: float  # sum over the candidate's processes
    steady: Steady | None = None  # the 10%-90% span of the input
    extra: dict[str, Any] = field(default_factory=dict)


def scrape(port: int, path: str = "/metrics", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of http://127.0.0.1:port/path; (0, "") when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@dataclass
class _Samples:
    """(time, processed, candidate CPU s, broker CPU s) as the harness polls."""

    rows: list[tuple[float, int, float, float | None]] = field(default_factory=list)

    def add(self, reports: list[dict[str, Any]], broker_cpu: float | None) -> None:
        if not reports:
            return
        count = sum(r["count"] for r in reports)
        cpu = sum(r["cpu"] for r in reports)
        at = max(r["at"] for r in reports)  # when the newest report was written
        if self.rows and at <= self.rows[-1][0]:
            return  # nothing new since the last poll
        self.rows.append((at, count, cpu, broker_cpu))

    def steady(self, target: int, low: float = 0.1, high: float = 0.9) -> Steady | None:
        """From the first sample at or past `low` of the target to the first at or past
        `high` (None when there are too few samples in between)."""
        start = next((r for r in self.rows if r[1] >= low * target), None)
        end = next((r for r in self.rows if r[1] >= high * target), None)
        if start is None or end is None or end[1] <= start[1] or end[0] <= start[0]:
            return None
        broker = None
        if start[3] is not None and end[3] is not None:
            broker = end[3] - start[3]
        return Steady(end[1] - start[1], end[0] - start[0], end[2] - start[2], broker)


class _BrokerCpu:
    """CPU seconds of the broker process (when we started it), sampled over time."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []

    def sample(self) -> float | None:
        if self.pid is None:
            return None
        now = cpu_seconds(self.pid)
        self.samples.append((time.time(), now))
        return now

    def between(self, t0: float, t1: float) -> float | None:
        if len(self.samples) < 2:
            return None

        def at(t: float) -> float:
            best = min(self.samples, key=lambda s: abs(s[0] - t))
            return best[1]

        return at(t1) - at(t0)


def _start(procs: list[Proc]) -> None:
    for proc in procs:
        proc.start()


def _stop(procs: list[Proc]) -> None:
    for proc in procs:
        proc.stop()


def _check_alive(procs: list[Proc]) -> None:
    for proc in procs:
        if not proc.alive():
            tail = proc.log_path.read_text(errors="replace")[-1500:]
            msg = (
                f"{proc.name} exited early ({proc.popen and proc.popen.returncode}); "
                f"log {proc.log_path}:\n{tail}"
            )
            raise Failed(msg)


def _progress(procs: list[Proc]) -> list[dict[str, Any]]:
    return [p for p in (proc.progress() for proc in procs) if p]


def _spies(procs: list[Proc], profile_dir: Path | None, run_id: str) -> list[Proc]:
    """py-spy (from bench/.venv) sampling each candidate process, without pausing it."""
    if profile_dir is None:
        return []
    profile_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for i, proc in enumerate(procs):
        out = profile_dir / f"{run_id}-{i}.txt"
        argv = [str(PY_SPY), "record", "--pid", str(proc.pid), "--rate", "100", "--nonblocking",
                "--format", "raw", "--output", str(out)]  # fmt: skip
        spies.append(Proc(f"py-spy {proc.name}", argv, dict(os.environ),
                          profile_dir / f"{run_id}-{i}.log", out).start())  # fmt: skip
    return spies


FINALS_SETTLE_S = 2.0
FINALS_BOUND_S = 30.0


def _settled_finals(procs: list[Proc], reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For candidates that count their finals (our worker): wait until the count has not
    grown for FINALS_SETTLE_S (bounded), so the CPU taken covers the finals the input
    caused, not only its folding. (Finals close on the slowest input partition's
    watermark, which reaches the other keyed partitions on the next ingest timer run:
    counting only up to the last input event would leave some of that work out.)"""

    def finals(rs: list[dict[str, Any]]) -> int | None:
        counts = [r.get("counters", {}).get("finals") for r in rs]
        return None if any(c is None for c in counts) else sum(counts)

    last = finals(reports)
    if last is None:
        return reports
    bound = time.time() + FINALS_BOUND_S
    steady_since = time.time()
    while time.time() < bound and time.time() - steady_since < FINALS_SETTLE_S:
        time.sleep(POLL_S)
        reports = _progress(procs)
        now = finals(reports)
        if now != last:
            last, steady_since = now, time.time()
    return reports


def throughput_run(spec: RunSpec, broker_pid: int | None, keep: bool = False,
                   profile_dir: Path | None = None,
                   truth: Truth | None = None) -> Outcome:  # fmt: skip
    """Start the candidate on the preloaded input; wait until it has processed spec.target
    records (bounded); stop it. Throughput = target / (last processed - first received).
    With `profile_dir`, py-spy samples the candidate's processes into folded stacks there.
    With `truth` (of the preloaded input, bench/truth.py), its output is then checked
    against it (in `extra["check"]`); a mismatch fails the run."""
    procs = spec.processes()
    broker = _BrokerCpu(broker_pid)
    samples = _Samples()
    _start(procs)
    spies = _spies(procs, profile_dir, spec.run_id)
    try:
        started = min(p.started_at for p in procs)
        deadline = started + START_BOUND_S
        while True:
            broker_cpu = broker.sample()
            reports = _progress(procs)
            samples.add(reports, broker_cpu)
            total = sum(r["count"] for r in reports)
            firsts = [r["first"] for r in reports if r["first"] is not None]
            if firsts and deadline == started + START_BOUND_S:
                deadline = time.time() + START_BOUND_S + spec.target / MIN_RATE
            if total >= spec.target:
                break
            _check_alive(procs)
            if time.time() > deadline:
                msg = f"{spec.run_id}: {total}/{spec.target} processed when the bound ran out"
                raise Failed(msg)
            time.sleep(POLL_S)
        time.sleep(POLL_S * 2)  # one more report each, for the CPU at the end
        reports = _settled_finals(procs, _progress(procs))
        broker.sample()
        rss_kb = sum(peak_rss_kb(p.pid) for p in procs if p.alive())
        first = min(r["first"] for r in reports if r["first"] is not None)
        last = max(r["last"] for r in reports if r["last"] is not None)
        cpu = sum(r["cpu"] - r["cpu_first"] for r in reports if r["cpu_first"] is not None)
        if not rss_kb:  # a candidate that exited on its own: its own getrusage figure
            rss_kb = sum(r["maxrss_kb"] for r in reports)
        outcome = Outcome(
            candidate=spec.candidate.name,
            workers=len(procs),
            events=_input_events(spec, truth),
            seconds=last - first,
            startup_s=first - started,
            cpu_s=cpu,
            broker_cpu_s=broker.between(first, last),
            peak_rss_mb=rss_kb / 1024,
            steady=samples.steady(spec.target),
            extra={"processes": reports},
        )
        if truth is not None:
            _check_output(spec, truth, outcome, procs)
        return outcome
    finally:
        _stop(procs)
        for spy in spies:  # it writes its file when its target has exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                if spy.popen is not None:
                    spy.popen.wait(timeout=30)
            spy.stop()
        _cleanup(spec, keep)


def _input_events(spec: RunSpec, truth: Truth | None) -> int:
    """Input records the run covers (spec.target, in the candidate's progress units: input
    messages for every candidate today)."""
    return spec.target if truth is None else truth.input_records(spec.candidate, spec.target)


def _check_output(spec: RunSpec, truth: Truth, outcome: Outcome, procs: list[Proc]) -> None:
    """Read the candidate's output (still running: its last coalesced changes go out, and
    one stopped at a share of the input goes on) and check it against the truth; Failed
    on any mismatch."""
    try:
        result = verify(spec, truth, lambda: sum(r["count"] for r in _progress(procs)))
    except Exception as exc:  # the checker's own failure fails the run, not the benchmark
        msg = f"{spec.run_id}: output check could not run: {exc!r}"
        raise Failed(msg) from exc
    outcome.extra["check"] = result
    if result["mismatch_count"]:
        shown = "\n  ".join(result["mismatches"])
        msg = (
            f"{spec.run_id}: output check FAILED, {result['mismatch_count']} mismatches "
            f"{result['mismatch_kinds']} ({result['finals_checked']} finals, "
            f"{result['changes_checked']} last changes checked, of "
            f"{result['windows_expected']} windows, {result['windows_closed']} closed); "
            f"first:\n  {shown}"
        )
        raise Failed(msg)


def _cleanup(spec: RunSpec, keep: bool) -> None:
    async def drop() -> None:
        names = [t for t in await data.list_topics(spec.bootstrap) if spec.run_id in t]
        await data.delete_topics(spec.bootstrap, names)

    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(drop(), 30))
    if not keep:
        shutil.rmtree(spec.workdir, ignore_errors=True)
