"""Anomalies and the observer coordinator on a real broker, against ground truth computed
here from the same generated events."""

from __future__ import annotations

import json
import math
import random
import signal
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from models import format_utc, from_epoch_ms
from streams.runtime.windows import parse_windows
from tests.support.broker import Broker
from tests.support.kafka_io import count_messages, create_topic, produce, read_topic
from tests.support.scenario import BASE_MS, Scenario, produce_flushers
from tests.support.truth import Event, windows_holding
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = pytest.mark.integration

SPECS = parse_windows("tumbling:60s,hopping:300s/60s")
ENV = {"INSIGHTS_IDLE_TIMEOUT": "1h"}
ALPHA, WARMUP, WARNING_Z, CRITICAL_Z, COOLDOWN_MS = 0.1, 30, 3.0, 5.0, 60_000


def reference_anomalies(events: list[Event]) -> dict[str, tuple[float, str]]:
    """event_id -> (zscore, severity), by the documented rule, per (subject, metric)."""
    baselines: dict[tuple[str, str], dict[str, Any]] = {}
    found = {}
    for e in events:
        b = baselines.get((e.subject_id, e.metric))
        if b is None:
            baselines[(e.subject_id, e.metric)] = {
                "n": 1, "mean": e.value, "var": 0.0, "last": None, "rank": 0
            }  # fmt: skip
            continue
        std, x = math.sqrt(b["var"]), e.value
        if b["n"] >= WARMUP and std > 0:
            z = (e.value - b["mean"]) / std
            rank = 2 if abs(z) >= CRITICAL_Z else 1 if abs(z) >= WARNING_Z else 0
            if rank:
                cooling = b["last"] is not None and e.observed_ms - b["last"] < COOLDOWN_MS
                if not cooling or rank > b["rank"]:
                    found[e.event_id] = (z, "critical" if rank == 2 else "warning")
                    b["last"], b["rank"] = e.observed_ms, rank
                x = b["mean"] + math.copysign(WARNING_Z * std, z)
        diff = x - b["mean"]
        b["mean"] += ALPHA * diff
        b["var"] = (1 - ALPHA) * (b["var"] + diff * ALPHA * diff)
        b["n"] += 1
    return found


def spiky_stream(spikes: set[int], n: int = 400) -> list[Event]:
    rng = random.Random(21)
    events = []
    for i in range(n):
        t = BASE_MS + i * 1000
        spike = 40.0 if i in spikes else 0.0
        events.append(Event(f"a-{i}", "o1", "s-spiky", "temp", 50 + rng.uniform(-1, 1) + spike, t))
        events.append(Event(f"n-{i}", "o1", "s-normal", "temp", 20 + rng.uniform(-1, 1), t))
    return events


async def read_all(broker: Broker, topic: str, expected: int) -> list[dict[str, Any]]:
    records = await read_topic(broker.bootstrap_servers, topic, until=lambda r: len(r) >= expected)
    return [json.loads(r.value) for r in records]


async def test_spikes_are_reported_once_with_exact_zscores(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    events = spiky_stream({5, 100, 150, 250, 330})
    truth = reference_anomalies(events)
    # 5 is in the warm-up; 150 is within the cooldown of 100; the normal subject has none.
    assert sorted(truth) == ["a-100", "a-250", "a-330"]
    assert {severity for _, severity in truth.values()} == {"critical"}
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(**ENV)
    await produce(
        broker.bootstrap_servers, names.input, Scenario(events, []).payloads(), partition=0
    )
    worker.wait_ready()
    anomalies = await read_all(broker, names.anomalies, len(truth))
    assert sorted(a["event_id"] for a in anomalies) == sorted(truth)
    for anomaly in anomalies:
        z, severity = truth[anomaly["event_id"]]
        assert anomaly["zscore"] == pytest.approx(z, rel=1e-6)
        assert anomaly["severity"] == severity
        assert anomaly["subject_id"] == "s-spiky"
        assert anomaly["baseline_stddev"] > 0
    # Everything has been processed (finals of the last windows need the flushers).
    await produce_flushers(broker.bootstrap_servers, names.input, Scenario(events, []), 4)
    await read_topic(
        broker.bootstrap_servers,
        names.rolling,
        until=lambda r: any(json.loads(x.value)["metric"] == "temp" and json.loads(x.value)["final"]
                            and json.loads(x.value)["window"]["end"].startswith("2026-11-27T10:06")
                            for x in r),
    )  # fmt: skip
    assert await count_messages(broker.bootstrap_servers, names.anomalies) == len(truth)
    assert worker.stop() == 0


def observer_stream(subjects: list[str], minutes: int, bias: float = 5.0) -> list[Event]:
    rng = random.Random(33)
    events = []
    for step in range(minutes * 12):
        t = BASE_MS + step * 5000
        for subject in subjects:
            base = 20 + 3 * math.sin(step / 20)
            for observer in ("o1", "o2", "o3"):
                offset = bias if observer == "o3" else 0.0
                value = round(base + rng.uniform(-1, 1) + offset, 6)
                events.append(
                    Event(f"{subject}-{observer}-{step}", observer, subject, "temp", value, t)
                )
    return events


def reference_consensus(events: list[Event]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(subject, window type, start ms) -> consensus, spread, per-observer deviation/outlier."""
    cells: dict[tuple[str, str, int], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for e in events:
        for kind, start, _ in windows_holding(e.observed_ms, SPECS):
            cells[(e.subject_id, kind, start)][e.observer_id].append(e.value)
    expected = {}
    for key, per_observer in cells.items():
        if len(per_observer) < 2:
            continue
        means = {o: math.fsum(v) / len(v) for o, v in per_observer.items()}
        center = statistics.median(means.values())
        mad = statistics.median(abs(m - center) for m in means.values())
        expected[key] = {
            "consensus": center,
            "spread": mad,
            "observers": {
                o: {
                    "mean": m,
                    "count": len(per_observer[o]),
                    "deviation": (m - center) / (1.4826 * mad),
                    "outlier": abs(m - center) / (1.4826 * mad) > 3.5,
                }
                for o, m in means.items()
            },
        }
    return expected


async def run_observers(
    broker: Broker,
    names: TopicNames,
    start_worker: Callable[..., WorkerProcess],
    events: list[Event],
    restart_at: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    scenario = Scenario(events, [])
    expected = reference_consensus(events)
    await create_topic(broker.bootstrap_servers, names.input, 4)
    worker = start_worker(**ENV)
    cut = restart_at if restart_at is not None else len(events)
    await produce(
        broker.bootstrap_servers, names.input, scenario.payloads(events[:cut]), partition=0
    )
    if restart_at is not None:
        worker.wait_ready()
        assert worker.stop(signal.SIGTERM) == 0
        worker = start_worker(**ENV)
        await produce(
            broker.bootstrap_servers, names.input, scenario.payloads(events[cut:]), partition=0
        )
    await produce_flushers(broker.bootstrap_servers, names.input, scenario, 4)
    worker.wait_ready()
    primary = sum(1 for (_, kind, _) in expected if kind == "tumbling")
    subjects = {e.subject_id for e in events}

    def complete(records: list[Any]) -> bool:
        values = [json.loads(r.value) for r in records]
        consensus = [v for v in values if v["kind"] == "consensus"]
        scored = {v["observer_id"]: v["windows_scored"] for v in values if v["kind"] == "observer"}
        return (
            len(consensus) >= len(expected)
            and all(scored.get(o, 0) >= primary for o in ("o1", "o2", "o3"))
            and bool(subjects)
        )

    records = await read_topic(broker.bootstrap_servers, names.observers, until=complete)
    values = [json.loads(r.value) for r in records]
    latest = {v["observer_id"]: v for v in values if v["kind"] == "observer"}
    assert worker.stop() == 0
    return [v for v in values if v["kind"] == "consensus"], latest


def assert_consensus_exact(consensus: list[dict[str, Any]], events: list[Event]) -> None:
    expected = reference_consensus(events)
    seen = set()
    for record in consensus:
        start = record["window"]["start"]
        window_type = record["window"]["type"]
        key = next(
            k
            for k in expected
            if k[0] == record["subject_id"] and k[1] == window_type and _iso(k[2]) == start
        )
        assert key not in seen, f"two consensus records for {key}"
        seen.add(key)
        truth = expected[key]
        assert record["consensus"] == pytest.approx(truth["consensus"], rel=1e-9)
        assert record["spread"] == pytest.approx(truth["spread"], rel=1e-9)
        for standing in record["observers"]:
            t = truth["observers"][standing["observer_id"]]
            assert standing["mean"] == pytest.approx(t["mean"], rel=1e-9)
            assert standing["count"] == t["count"]
            assert standing["deviation"] == pytest.approx(t["deviation"], rel=1e-6)
            assert standing["outlier"] is t["outlier"], (key, standing)
    assert seen == set(expected)


def _iso(ms: int) -> str:
    return format_utc(from_epoch_ms(ms))


async def test_biased_observer_is_flagged_in_every_window_and_drifts_most(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    events = observer_stream(["s-1", "s-2", "s-3"], minutes=6)
    consensus, latest = await run_observers(broker, names, start_worker, events)
    assert_consensus_exact(consensus, events)
    for record in consensus:  # the biased observer, and only it, in every window
        flagged = [s["observer_id"] for s in record["observers"] if s["outlier"]]
        assert flagged == ["o3"], record
    primary = sum(1 for k in reference_consensus(events) if k[1] == "tumbling")
    for observer in ("o1", "o2", "o3"):
        assert latest[observer]["windows_scored"] == primary
        assert latest[observer]["stale"] is False
    assert latest["o3"]["outlier_windows"] == primary
    assert latest["o1"]["outlier_windows"] == latest["o2"]["outlier_windows"] == 0
    assert latest["o3"]["drift_score"] > 5 * max(
        latest["o1"]["drift_score"], latest["o2"]["drift_score"]
    )


async def test_restart_halfway_continues_baselines_and_drift(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    """One subject, so the order of scores (and so the drift figures) is deterministic."""
    events = observer_stream(["s-1"], minutes=6)
    spikes = [Event(f"spike-{i}", "o1", "s-1", "temp", 200.0, BASE_MS + i * 90_000 + 2500)
              for i in (1, 3)]  # fmt: skip
    for spike in spikes:
        index = next(i for i, e in enumerate(events) if e.observed_ms > spike.observed_ms)
        events.insert(index, spike)
    truth = reference_anomalies(events)
    assert set(truth) == {"spike-1", "spike-3"}
    consensus, latest = await run_observers(
        broker, names, start_worker, events, restart_at=len(events) // 2
    )
    assert_consensus_exact(consensus, events)
    anomalies = await read_all(broker, names.anomalies, len(truth))
    assert sorted(a["event_id"] for a in anomalies) == sorted(truth)
    for anomaly in anomalies:
        assert anomaly["zscore"] == pytest.approx(truth[anomaly["event_id"]][0], rel=1e-6)
    # Drift continued from the changelog: equal to the same recurrence over all windows.
    expected = reference_consensus(events)
    windows = sorted(k for k in expected if k[1] == "tumbling")
    for observer in ("o1", "o2", "o3"):
        drift = None
        for key in windows:
            d = abs(expected[key]["observers"][observer]["deviation"])
            drift = d if drift is None else 0.2 * d + 0.8 * drift
        assert latest[observer]["drift_score"] == pytest.approx(drift, rel=1e-6)
        assert latest[observer]["windows_scored"] == len(windows)
