"""One measured run of a candidate: throughput on the preloaded input, or latency at a rate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench import data
from bench.check import verify
from bench.outputs import read_values as _read_all
from bench.procs import Proc, cpu_seconds, peak_rss_kb
from bench.roster import BENCH_PY, RunSpec
from bench.truth import Truth

__all__ = ["Failed", "Outcome", "latency_run", "scrape", "throughput_run"]

POLL_S = 0.05
PY_SPY = BENCH_PY.parent / "py-spy"
START_BOUND_S = 120.0  # a candidate must process its first record within this
MIN_RATE = 200.0  # ... and then at least this many records per second


class Failed(Exception):
    """A run that did not finish: the message says why and where its log is."""


@dataclass
class Outcome:
    """What one run measured."""

    candidate: str
    workers: int
    events: int
    seconds: float  # first record in -> last record processed
    startup_s: float  # process start -> first record in
    cpu_s: float  # candidate processes, over `seconds`
    broker_cpu_s: float | None
    peak_rss_mb: float  # sum over the candidate's processes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu_s / self.events * 100_000


def scrape(port: int, path: str = "/metrics", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of http://127.0.0.1:port/path; (0, "") when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


class _BrokerCpu:
    """CPU seconds of the broker process (when we started it), sampled over time."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []

    def sample(self) -> None:
        if self.pid is not None:
            self.samples.append((time.time(), cpu_seconds(self.pid)))

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
    _start(procs)
    spies = _spies(procs, profile_dir, spec.run_id)
    try:
        started = min(p.started_at for p in procs)
        deadline = started + START_BOUND_S
        while True:
            broker.sample()
            reports = _progress(procs)
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
    """Input records the run covers: spec.target is in the candidate's progress units (our
    worker counts an observation once per scope it is counted in, and no invalid,
    duplicate or late one), so with the truth it is scaled back to records."""
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


# -- latency -----------------------------------------------------------------------------


def _epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() * 1000


def _latency_ms(doc: dict[str, Any]) -> float | None:
    """Emitted - newest observed_at of the record; None for final records."""
    if "emitted_at" in doc:  # our worker's insight record
        if doc.get("final"):
            return None
        return _epoch_ms(doc["emitted_at"]) - _epoch_ms(doc["last_at"])
    return float(doc["emitted_ms"]) - float(doc["last_ms"])


def _histogram(text: str, name: str) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= q * total:
            return le * 1000
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_run(spec: RunSpec, rate: float, seconds: float, keep: bool = False) -> dict[str, Any]:
    """Start the candidate on an empty input topic, warm it up, produce `rate` events/s for
    `seconds`, then read its output: per output record, emitted - newest observed_at in it
    (the input was stamped with its send time). The first 2 s of the phase are skipped."""
    asyncio.run(data.create_topics(spec.bootstrap, [spec.input_topic], spec.partitions))
    procs = spec.processes()
    _start(procs)
    metrics_port = procs[0].ports.get("metrics")
    name = "insights_event_to_insight_seconds"
    try:
        asyncio.run(_warm_up(spec, procs))
        before = _histogram(scrape(metrics_port)[1], name) if metrics_port else {}
        processed_before = sum(r["count"] for r in _progress(procs))
        start_ms, last_ms = asyncio.run(
            data.produce_at_rate(spec.bootstrap, spec.input_topic, rate, seconds, seed=13)
        )
        time.sleep(3.0)  # > the flush interval: the last changes are out
        _check_alive(procs)
        after = _histogram(scrape(metrics_port)[1], name) if metrics_port else {}
        processed = sum(r["count"] for r in _progress(procs)) - processed_before
    finally:
        _stop(procs)
    values = asyncio.run(_read_all(spec.bootstrap, spec.output_topic))
    _cleanup(spec, keep)
    lat = []
    for value in values:
        doc = orjson.loads(value)
        ms = _latency_ms(doc)
        newest = doc.get("last_ms") or (_epoch_ms(doc["last_at"]) if "last_at" in doc else 0)
        if ms is not None and start_ms + 2000 <= newest <= last_ms:
            lat.append(ms)
    sent = round((last_ms - start_ms) / 1000 * rate) + 1
    result: dict[str, Any] = {
        "candidate": spec.candidate.name,
        "rate": rate,
        "seconds": seconds,
        "sent": sent,
        "processed": processed,
        "records": len(lat),
        "p50_ms": _percentile(lat, 0.50) if lat else None,
        "p99_ms": _percentile(lat, 0.99) if lat else None,
        "mean_ms": statistics.fmean(lat) if lat else None,
    }
    if before or after:
        result["worker_histogram_p50_ms_le"] = _bucket_quantile(before, after, 0.50)
        result["worker_histogram_p99_ms_le"] = _bucket_quantile(before, after, 0.99)
    return result


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
