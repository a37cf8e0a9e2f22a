"""Run the benchmark: preload N events, run the candidates interleaved for several rounds,
print the table, write JSON. `python -m bench --help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import data, truth
from bench.latency import latency_run, summarise_latency
from bench.measure import Failed, Outcome, throughput_run
from bench.procs import listening_pid
from bench.recovery import recovery_run
from bench.report import latency_table, ratio, summarise, table, targets
from bench.roster import CANDIDATES, ROOT, RunSpec, python_ok
from streams.cli.embedded import EmbeddedBroker

__all__ = ["main"]

SCALED = "insights-default"  # the candidate run with each of --workers


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="events to preload (1M)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--seed", type=int, default=None, help="of the rounds' shuffled orders (default: random)"
    )
    p.add_argument(
        "--profile",
        default="ideal",
        choices=list(data.PROFILES),
        help="input stream profile (bench/data.py): ideal (valid, in order) or realistic "
        "(invalid, duplicate, late and out-of-order records, groups)",
    )
    p.add_argument("--subjects", type=int, default=data.SUBJECTS, help="distinct subjects")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=data.INTERVAL_MS,
        help=f"event time between input records ({data.INTERVAL_MS:g}: a 60 s window holds "
        f"{60_000 / data.INTERVAL_MS:,.0f}); larger makes a small run span more windows",
    )
    p.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help=f"comma separated, of: {', '.join(CANDIDATES)}",
    )
    p.add_argument(
        "--workers",
        default="1",
        help=f"worker process counts for {SCALED}, e.g. 1,2 (others run one)",
    )
    p.add_argument(
        "--guarantee",
        default="at_least_once",
        choices=["at_least_once", "exactly_once"],
        help="for our worker and Quix (exactly_once needs Apache Kafka)",
    )
    p.add_argument("--latency-rate", type=float, default=5000.0, help="events/s (0: skip)")
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--latency-repeats", type=int, default=5)
    p.add_argument("--recovery-keys", type=int, default=100_000, help="0: skip")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default bench/results/<timestamp>.json)",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy our worker's processes during throughput runs (folded stacks "
        "in DIR; it costs CPU: figures of a profiled run are not comparable)",
    )
    p.add_argument(
        "--code",
        default="worktree",
        metavar="worktree|REV",
        help="what our worker runs: a copy of agents/, streams/, models/ taken at "
        "start (worktree, default) or from a git revision; either way the same "
        "code for every round, whatever is edited meanwhile",
    )
    p.add_argument("--keep", action="store_true", help="keep candidates' work dirs and logs")
    return p.parse_args(argv)


def _loopback_only(bootstrap: str) -> None:
    for server in bootstrap.split(","):
        host = server.strip().rsplit(":", 1)[0].strip("[]")
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        if not all(ipaddress.ip_address(a).is_loopback for a in addresses):
            sys.exit(f"bench: {server} is not a loopback address; the benchmark runs locally")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def _snapshot(code: str, dest: Path) -> str:
    """Freeze the worker's code into `dest`; returns what was frozen (for the results)."""
    dest.mkdir(parents=True)
    packages = ["agents", "streams", "models"]
    if code == "worktree":
        for name in packages:
            shutil.copytree(ROOT / name, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        dirty = _git("status", "--porcelain", "--", *packages)
        return f"worktree at {_git('rev-parse', 'HEAD')}" + (" + uncommitted" if dirty else "")
    archive = subprocess.run(["git", "archive", code, *packages], cwd=ROOT,
                             capture_output=True, check=True, timeout=60)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    return f"{code} = {_git('rev-parse', code)}"


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: candidates stop


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    missing = python_ok()
    if missing:
        sys.exit("bench: missing " + "; ".join(missing) + " (run bench/setup)")
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"bench: unknown candidates {unknown}; known: {list(CANDIDATES)}")
    workers = [int(w) for w in args.workers.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = args.json or ROOT / "bench" / "results" / f"{stamp}.json"
    root = Path(tempfile.mkdtemp(prefix="oci-bench-"))
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker_pid = None
        if bootstrap:
            _loopback_only(bootstrap)
            broker_name = f"Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)"
            broker_pid = listening_pid(int(bootstrap.split(",")[0].rsplit(":", 1)[1]))
            if broker_pid is None:
                _say(f"no process of this machine listens on {bootstrap}: broker CPU not taken")
        else:
            if args.guarantee == "exactly_once":
                sys.exit("bench: exactly_once needs KAFKA_BOOTSTRAP_SERVERS (Apache Kafka)")
            broker = stack.enter_context(EmbeddedBroker(log_path=root / "broker.log"))
            bootstrap = broker.bootstrap_servers
            broker_pid = broker._process.pid if broker._process else None
            broker_name = "embedded broker (Tansu, in memory)"
        if not args.keep:
            stack.callback(shutil.rmtree, root, True)
        _say(f"broker: {broker_name}; work dir {root}")
        doc = _run(args, names, workers, bootstrap, broker_pid, root, stamp)
        doc["broker"] = broker_name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2, default=str))
    print()
    print(
        f"broker: {doc['broker']}; {doc['events']:,} events ({doc['profile']}) preloaded "
        f"on 8 partitions; "
        f"{doc['rounds']} rounds; guarantee {doc['guarantee']}; {doc['cpus']} CPUs"
    )
    print(doc["table"])
    if doc["latency"]:
        print()
        print(doc["latency_table"])
    for t in doc["targets"]:
        print(f"  {'met    ' if t['met'] else 'NOT met'}  {t['target']}: {t['measured']}")
    if doc.get("recovery"):
        print(f"  recovery: {json.dumps(doc['recovery'])}")
    for failure in doc["failures"]:
        print(f"  FAILED {failure}")
    print(f"results: {out_path}")
    return 1 if doc["failures"] else 0


def _run(
    args: argparse.Namespace,
    names: list[str],
    workers: list[int],
    bootstrap: str,
    broker_pid: int | None,
    root: Path,
    stamp: str,
) -> dict[str, Any]:
    prefix = f"bench-{stamp}"
    code = _snapshot(args.code, root / "code")
    _say(f"our worker runs {code}")
    input_topic = f"{prefix}-in"
    span_ms = args.events * args.interval_ms
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - now_ms % 60_000 - int(span_ms) - 600_000  # ends 10 min in the past
    asyncio.run(data.create_topics(bootstrap, [input_topic], 8))
    t0 = time.monotonic()
    events = data.bench_events(
        data.PROFILES[args.profile],
        args.events,
        start_ms,
        subjects=args.subjects,
        interval_ms=args.interval_ms,
    )
    sent = asyncio.run(data.preload(bootstrap, input_topic, data.records(events)))
    _say(
        f"preloaded {sent:,} events ({args.profile}) into {input_topic} "
        f"in {time.monotonic() - t0:.1f}s"
    )

    plan = [
        (CANDIDATES[n], w)
        for n in names
        if CANDIDATES[n].throughput
        for w in (workers if n == SCALED else [1])
    ]
    truths = _truths(events, [c for c, _ in plan])
    del events
    outcomes: list[Outcome] = []
    failures: list[str] = []
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    shuffler = random.Random(seed)
    _say(f"rounds in shuffled order, seed {seed}")
    for r in range(args.rounds):
        order = shuffler.sample(plan, len(plan))  # no candidate has a fixed place
        for candidate, w in order:
            run_id = f"{prefix}-r{r}-{candidate.name}-w{w}"
            expected = truths.get(candidate.name)
            total = expected.progress_total(candidate) if expected else args.events
            target = max(1, round(total * candidate.share))
            spec = RunSpec(
                candidate,
                bootstrap,
                input_topic,
                run_id,
                root / run_id,
                workers=w,
                target=target,
                guarantee=args.guarantee,
                code=root / "code",
                keys=args.subjects * data.METRICS,
            )
            try:
                profile = args.py_spy if candidate.kind == "insights" else None
                o = throughput_run(
                    spec, broker_pid, keep=args.keep, profile_dir=profile, truth=expected
                )
            except Failed as exc:
                failures.append(str(exc))
                _say(f"round {r + 1}: {candidate.name} x{w}: FAILED {exc}")
                continue
            outcomes.append(o)
            o.extra["loadavg"] = os.getloadavg()
            o.extra["round"] = r
            steady = (
                f"steady {o.steady.rate:,.0f} events/s, CPU {o.steady.cpu_per_100k:.2f}s/100k"
                if o.steady
                else "no steady span"
            )
            _say(
                f"round {r + 1}: {candidate.name} x{w}: {steady}; whole run {o.rate:,.0f} "
                f"events/s ({o.events:,} in {o.seconds:.1f}s, start {o.startup_s:.1f}s, "
                f"CPU {o.cpu_per_100k:.2f}s/100k, RSS {o.peak_rss_mb:,.0f} MB, "
                f"load {o.extra['loadavg'][0]:.1f})"
            )
            if "check" in o.extra:
                _say(f"round {r + 1}: {candidate.name} x{w}: {_checked(o.extra['check'])}")

    latency: dict[str, dict[str, Any]] = {}
    if args.latency_rate > 0:
        lat_plan = [n for n in names if CANDIDATES[n].emits_changes]
        repeats: dict[str, list[dict[str, Any]]] = {n: [] for n in lat_plan}
        for k in range(args.latency_repeats):
            for name in shuffler.sample(lat_plan, len(lat_plan)):
                run_id = f"{prefix}-lat{k}-{name}"
                spec = RunSpec(
                    CANDIDATES[name],
                    bootstrap,
                    f"{run_id}-in",
                    run_id,
                    root / run_id,
                    guarantee=args.guarantee,
                    code=root / "code",
                )
                try:
                    one = latency_run(spec, args.latency_rate, args.latency_seconds, args.keep)
                except Exception as exc:  # one failed figure must not lose the others
                    failures.append(f"latency {name} #{k + 1}: {exc!r}")
                    _say(f"latency {name} #{k + 1}: FAILED {exc!r}")
                    continue
                repeats[name].append(one)
                _say(f"latency {name} #{k + 1}: {json.dumps(one)}")
        latency = {n: summarise_latency(r) for n, r in repeats.items() if r}

    recovery = None
    if args.recovery_keys > 0:
        try:
            recovery = recovery_run(
                bootstrap,
                f"{prefix}-recovery",
                root / "recovery",
                args.recovery_keys,
                args.guarantee,
                keep=args.keep,
                code=root / "code",
            )
            _say(f"recovery: {json.dumps(recovery)}")
        except Exception as exc:
            failures.append(f"recovery: {exc!r}")
            _say(f"recovery: FAILED {exc!r}")

    rows = summarise(outcomes)
    goals = targets(rows, latency, recovery)
    if args.guarantee == "exactly_once":
        exactly = ratio(rows, "insights-default", "quix-final-direct")
        if exactly is not None:
            goals.append(
                {
                    "target": "exactly_once: default set ≥ 1.5x Quix .final() without group_by",
                    "measured": f"{exactly['median']:.2f}x (rounds {exactly['min']:.2f}-"
                    f"{exactly['max']:.2f}x)",
                    "met": exactly["median"] >= 1.5,
                    "ratio": exactly,
                }
            )
    return {
        "stamp": stamp,
        "code": code,
        "loadavg_end": os.getloadavg(),
        "events": args.events,
        "profile": args.profile,
        "subjects": args.subjects,
        "interval_ms": args.interval_ms,
        "rounds": args.rounds,
        "order_seed": seed,
        "guarantee": args.guarantee,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "table": table(rows, latency),
        "latency_table": latency_table(latency),
        "summary": rows,
        "latency": latency,
        "recovery": recovery,
        "targets": goals,
        "runs": [asdict(o) | {"rate": o.rate} for o in outcomes],
        "failures": failures,
    }


def _truths(events: list[data.BenchEvent], candidates: list[Any]) -> dict[str, truth.Truth]:
    """The ground truth of the preloaded events for each candidate (by name), computed once
    per semantics; none for a candidate without aggregate output (raw consume)."""
    parsed = truth.parse_events(events)
    by_semantics: dict[truth.Semantics, list[Any]] = {}
    for candidate in candidates:
        semantics = truth.semantics_of(candidate)
        if semantics is not None:
            by_semantics.setdefault(semantics, []).append(candidate)
    out = {}
    for semantics, group in by_semantics.items():
        partial = any(c.share < 1 for c in group)  # checked on prefixes: keep the values
        expected = truth.compute(parsed, semantics, sequences=partial)
        for candidate in group:
            out[candidate.name] = expected
    return out


def _checked(check: dict[str, Any]) -> str:
    late = ""
    if "late_counted" in check:  # our worker: its dead letters accounted for
        late = (
            f"; dead letters {check['dead_letters']}, late (scope, event) pairs counted "
            f"{check['late_counted']} (before a watermark), refused {check['late_refused']}"
        )
    return (
        f"output check passed: {check['finals_checked']:,} finals, "
        f"{check['changes_checked']:,} last changes checked "
        f"({check['windows_expected']:,} windows, {check['windows_closed']:,} closed"
        f"{', partial input: prefixes' if check['partial'] else ''}); "
        f"{check['records_per_event']:.3f} records, {check['bytes_per_event']:.1f} bytes "
        f"per input event{late}"
    )
