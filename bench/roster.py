"""The candidates, and how to start each one as processes for a run."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from bench.procs import Proc
from streams.cli.embedded import free_port

__all__ = ["CANDIDATES", "Candidate", "RunSpec"]

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench" / "candidates"
MAIN_PY = ROOT / ".venv" / "bin" / "python"
BENCH_PY = ROOT / "bench" / ".venv" / "bin" / "python"
NO_LIMIT = 10**12


@dataclass(frozen=True)
class Candidate:
    """A candidate: `kind` picks the program, the rest are its options."""

    name: str
    kind: str  # insights | quix | faust | raw
    description: str
    windows: str | None = None  # insights: INSIGHTS_WINDOWS (None: the default set)
    emit: str | None = None  # insights: INSIGHTS_EMIT (None: default `both`); quix: final|current
    mode: str | None = None  # raw: consume|aggregate; quix: group_by (default)|direct
    emits_changes: bool = True  # has a per-update output whose latency means something
    share: float = 1.0  # of the N preloaded events it is measured on (slow candidates)
    flush_interval: str | None = None  # insights: INSIGHTS_FLUSH_INTERVAL (None: 1s)
    throughput: bool = True  # False: measured for latency only
    persist_interval: str | None = None  # insights: INSIGHTS_PERSIST_INTERVAL (None: per flush)
    settings: tuple[tuple[str, str], ...] = ()  # insights: more INSIGHTS_* variables

    @property
    def scalable(self) -> bool:
        return self.kind == "insights"


# The minimal set as the issue defines it (one tumbling window; count, sum, min, max), what
# the Quix Streams candidates compute: basic aggregates, no dedup (the default set has it)
# and no anomaly detection.
MINIMAL = (
    ("INSIGHTS_AGGREGATES", "basic"),
    ("INSIGHTS_DEDUP_TTL", "0s"),
    ("INSIGHTS_ANOMALY_DETECTION", "false"),
)


# The keyed hop: the worker's own topics (keyed topic, changelogs, outputs) with 12 partitions
# (the product's default) while the bench's input has 8, so the two are not co-partitioned and
# ingest sends every valid event over the keyed topic (agents/ingest.py folds a record in
# directly only when input and keyed topic are co-partitioned and the record's keyed partition
# is the one it was read from). The harness sets INSIGHTS_TOPIC_PARTITIONS to the input's
# count; a candidate's settings come after it.
HOP = (("INSIGHTS_TOPIC_PARTITIONS", "12"),)

_DEFAULT_KEY_BUDGET = 25_000  # INSIGHTS_MAX_KEYS_PER_PARTITION's default


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate(
            "insights-default",
            "insights",
            "our worker, default windows (tumbling 60s + hopping 300s/60s), emit both",
        ),
        Candidate(
            "insights-min-final",
            "insights",
            "our worker, minimal set (tumbling 60s, basic aggregates, no dedup, no anomalies), "
            "emit final",
            windows="tumbling:60s",
            settings=MINIMAL,
            emit="final",
            emits_changes=False,
        ),
        Candidate(
            "insights-min-final-full",
            "insights",
            "our worker, tumbling 60s, full aggregates, dedup and anomalies, emit final",
            windows="tumbling:60s",
            emit="final",
            emits_changes=False,
        ),
        Candidate(
            "insights-min-changes",
            "insights",
            "our worker, minimal set, emit changes",
            windows="tumbling:60s",
            settings=MINIMAL,
            emit="changes",
        ),
        Candidate(
            "insights-default-hop",
            "insights",
            "our worker, default windows, emit both, keyed topic of 12 partitions (input 8): "
            "every event crosses the keyed topic",
            settings=HOP,
        ),
        Candidate(
            "insights-min-final-hop",
            "insights",
            "our worker, minimal set, emit final, keyed topic of 12 partitions (input 8): "
            "every event crosses the keyed topic",
            windows="tumbling:60s",
            settings=MINIMAL + HOP,
            emit="final",
            emits_changes=False,
        ),
        # The latency setting: changes coalesced per 100 ms instead of per second (ten times
        # the output records and changelog writes of a busy key, a tenth of the wait).
        Candidate(
            "insights-default-100ms",
            "insights",
            "our worker, default windows, emit both, INSIGHTS_FLUSH_INTERVAL=100ms",
            flush_interval="100ms",
            throughput=False,
        ),
        Candidate(
            "insights-min-changes-100ms",
            "insights",
            "our worker, minimal set, emit changes, INSIGHTS_FLUSH_INTERVAL=100ms",
            windows="tumbling:60s",
            settings=MINIMAL,
            emit="changes",
            flush_interval="100ms",
            throughput=False,
        ),
        Candidate(
            "insights-min-changes-50ms",
            "insights",
            "our worker, minimal set, emit changes, INSIGHTS_FLUSH_INTERVAL=50ms",
            windows="tumbling:60s",
            settings=MINIMAL,
            emit="changes",
            flush_interval="50ms",
            throughput=False,
        ),
        Candidate(
            "quix-final",
            "quix",
            "Quix Streams group_by (subject, metric) + tumbling reduce .final()",
            emit="final",
            emits_changes=False,
        ),
        Candidate(
            "quix-current",
            "quix",
            "Quix Streams group_by (subject, metric) + tumbling reduce .current()",
            emit="current",
        ),
        # Equal keying: the input is keyed by subject, so Quix can window where it reads, as
        # our worker folds co-partitioned input without its keyed hop.
        Candidate(
            "quix-final-direct",
            "quix",
            "Quix Streams on the subject-keyed input (no group_by): tumbling reduce of every "
            "metric of a subject .final()",
            emit="final",
            mode="direct",
            emits_changes=False,
        ),
        Candidate(
            "quix-current-direct",
            "quix",
            "Quix Streams on the subject-keyed input (no group_by): tumbling reduce of every "
            "metric of a subject .current()",
            emit="current",
            mode="direct",
        ),
        Candidate(
            "faust-naive",
            "faust",
            "naive Faust agent: windowed table write + send per event",
            share=0.25,
        ),
        Candidate(
            "raw-consume",
            "raw",
            "raw aiokafka consume + orjson decode",
            mode="consume",
            emits_changes=False,
        ),
        Candidate(
            "raw-finals",
            "raw",
            "raw ceiling of the minimal set: aiokafka consume + decode + validate + aggregate "
            "+ batched finals per partition watermark, committed after delivery",
            mode="finals",
            emits_changes=False,
        ),
        Candidate(
            "raw-finals-groups",
            "raw",
            "raw ceiling of the minimal set with the group scope (our worker's work on the "
            "realistic profile): raw-finals also folding (group_id, metric) in-process, group "
            "windows closed at the lowest partition watermark; no keyed hop",
            mode="finals-groups",
            emits_changes=False,
        ),
        Candidate(
            "raw-aggregate",
            "raw",
            "raw aiokafka consume + decode + aggregate + one produce per event",
            mode="aggregate",
        ),
    )
}


def _persisting(c: Candidate, interval: str = "5s") -> Candidate:
    """`c` with the changelog written (and input offsets released) every `interval`, as
    often as Quix Streams commits by default, instead of every flush (at_least_once)."""
    return replace(
        c,
        name=f"{c.name}-persist{interval}",
        description=f"{c.description}, INSIGHTS_PERSIST_INTERVAL={interval}",
        persist_interval=interval,
    )


for _name in (
    "insights-default",
    "insights-min-final",
    "insights-min-changes",
    "insights-min-changes-100ms",
    "insights-min-changes-50ms",
):
    _variant = _persisting(CANDIDATES[_name])
    CANDIDATES[_variant.name] = _variant


@dataclass(frozen=True)
class RunSpec:
    """One run of one candidate: where it reads, what it is called, where its files go."""

    candidate: Candidate
    bootstrap: str
    input_topic: str
    run_id: str  # unique: app id / consumer group / topic prefix
    workdir: Path
    workers: int = 1
    target: int = NO_LIMIT
    guarantee: str = "at_least_once"
    partitions: int = 8
    code: Path | None = None  # a snapshot of agents/, streams/, models/ our worker runs
    keys: int = 0  # (subject, metric) keys in the input: our worker's key budget fits them

    @property
    def output_topic(self) -> str:
        return (
            f"{self.run_id}.out" if self.candidate.kind != "insights" else f"{self.run_id}.rolling"
        )

    def processes(self) -> list[Proc]:
        c = self.candidate
        self.workdir.mkdir(parents=True, exist_ok=True)
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("INSIGHTS_", "BENCH_", "KAFKA_"))
        }
        base_env["PYTHONUNBUFFERED"] = "1"
        procs = []
        for i in range(self.workers if c.scalable else 1):
            env = dict(base_env)
            env["BENCH_PROGRESS"] = str(self.workdir / f"progress-{i}.json")
            ports: dict[str, int] = {}
            if c.kind == "insights":
                ports = {"web": free_port(), "metrics": free_port()}
                env.update(self._insights_env(i, ports))
                if self.code is not None:  # shadows the editable install of the live tree
                    env["PYTHONPATH"] = str(self.code)
                argv = [str(MAIN_PY), str(HERE / "insights_worker.py")]
            elif c.kind == "quix":
                argv = [
                    str(BENCH_PY),
                    str(HERE / "quix_app.py"),
                    c.emit or "final",
                    self.bootstrap,
                    self.input_topic,
                    self.run_id,
                    self.output_topic,
                    str(self.workdir / "state"),
                    self.guarantee,
                    c.mode or "group_by",
                ]
            elif c.kind == "faust":
                argv = [
                    str(MAIN_PY),
                    str(HERE / "faust_naive.py"),
                    self.bootstrap,
                    self.input_topic,
                    self.run_id,
                    self.output_topic,
                    str(self.workdir / "data"),
                    str(self.partitions),
                ]
            elif c.mode in ("finals", "finals-groups"):
                argv = [
                    str(MAIN_PY),
                    str(HERE / "raw_finals.py"),
                    self.bootstrap,
                    self.input_topic,
                    self.run_id,
                    self.output_topic,
                    *(["groups"] if c.mode == "finals-groups" else []),
                ]
            else:
                argv = [
                    str(MAIN_PY),
                    str(HERE / "raw_aiokafka.py"),
                    c.mode or "consume",
                    self.bootstrap,
                    self.input_topic,
                    self.run_id,
                    self.output_topic,
                    str(self.target),
                ]
            procs.append(
                Proc(
                    f"{c.name}#{i}",
                    argv,
                    env,
                    self.workdir / f"log-{i}.txt",
                    self.workdir / f"progress-{i}.json",
                    ports,
                )
            )
        return procs

    def _insights_env(self, i: int, ports: dict[str, int]) -> dict[str, str]:
        c, rid = self.candidate, self.run_id
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "INSIGHTS_APP_ID": rid,
            "INSIGHTS_INPUT_TOPIC": self.input_topic,
            "INSIGHTS_ROLLING_TOPIC": f"{rid}.rolling",
            "INSIGHTS_ANOMALY_TOPIC": f"{rid}.anomalies",
            "INSIGHTS_OBSERVER_TOPIC": f"{rid}.observers",
            "INSIGHTS_DEADLETTER_TOPIC": f"{rid}.deadletter",
            "INSIGHTS_TOPIC_PARTITIONS": str(self.partitions),
            "INSIGHTS_IDLE_TIMEOUT": "6h",
            "INSIGHTS_PROCESSING_GUARANTEE": self.guarantee,
            "INSIGHTS_WEB_HOST": "127.0.0.1",
            "INSIGHTS_WEB_PORT": str(ports["web"]),
            "INSIGHTS_METRICS_PORT": str(ports["metrics"]),
            "INSIGHTS_DATA_DIR": str(self.workdir / f"data-{i}"),
        }
        # The key budget sized for the input's keys, as a user holding that many would
        # (the default, 25,000 keys per keyed partition, holds 200,000 on 8 partitions).
        budget = -(-self.keys * 5 // (4 * self.partitions))  # a quarter over the even share
        if budget > _DEFAULT_KEY_BUDGET:
            env["INSIGHTS_MAX_KEYS_PER_PARTITION"] = str(budget)
        if c.windows:
            env["BENCH_INSIGHTS_WINDOWS"] = c.windows  # see candidates/insights_worker.py
        if c.emit:
            env["INSIGHTS_EMIT"] = c.emit
        if c.flush_interval:
            env["INSIGHTS_FLUSH_INTERVAL"] = c.flush_interval
        if c.persist_interval:
            env["INSIGHTS_PERSIST_INTERVAL"] = c.persist_interval
        env.update(c.settings)
        if os.environ.get("BENCH_PROFILE_DIR"):
            env["BENCH_PROFILE"] = str(Path(os.environ["BENCH_PROFILE_DIR"]) / f"{rid}-{i}.prof")
        if os.environ.get("BENCH_TRACEMALLOC_DIR"):
            env["BENCH_TRACEMALLOC"] = str(
                Path(os.environ["BENCH_TRACEMALLOC_DIR"]) / f"{rid}-{self.workdir.name}-{i}.txt"
            )
        return env


def python_ok() -> list[str]:
    """What is missing to run the candidates (empty when all is there)."""
    missing = []
    if not MAIN_PY.exists():
        missing.append(f"{MAIN_PY} (run scripts/bootstrap)")
    if not BENCH_PY.exists():
        missing.append(f"{BENCH_PY} (run bench/setup)")
    return missing


if __name__ == "__main__":
    for name, cand in CANDIDATES.items():
        print(f"{name:24} {cand.description}", file=sys.stdout)
