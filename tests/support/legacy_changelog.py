"""Rolling-state changelog tables as the code before the changelog codec wrote them, and
what a partition restored from one does next (the migration test compares the two).

A scenario is a partition's settings and input; `run_scenario` feeds it through a
`PartitionState`, persisting after every batch into a table as the changelog holds it;
`outcomes` records what a restored state holds and does: its watermark, panes, queries,
dedup and late decisions on probe records, anomalies and finals (floats exactly, by
`repr`). The fixture's tables were written by `run_scenario` with the code of commit
0ff5a3e (its `generate`, removed since: this code writes the new format).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.anomaly import AnomalyConfig
from agents.rolling import Emission, PartitionState, WindowPlan
from agents.rolling.aggregate import Aggregate, BasicAggregate, PaneAggregate
from agents.rolling.records import insight_record
from models.keyed import KeyedObservation, SourceReport
from streams.runtime.windows import parse_windows

FIXTURES = Path(__file__).resolve().parent.parent / "unit" / "fixtures" / "legacy_changelog"
BASE_MS = 1_795_780_800_000  # a multiple of an hour
RECEIVED_MS = 1_795_780_900_000  # receive (wall clock) time of the first batch
EMITTED_AT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
FAR_FUTURE = 10**13
ANOMALY = AnomalyConfig(alpha=0.2, warmup=3, warning_z=2.0, critical_z=4.0, cooldown_ms=0)


@dataclass(frozen=True)
class Scenario:
    """A partition's settings and input, and what its table is restored as."""

    name: str
    windows: str
    grace_ms: int
    kind: str  # "full" (observers capped at 4), "full50" (capped at 50) or "basic"
    dedup_ttl_ms: int
    dedup_max_ids: int | None
    anomaly: bool
    events: int
    restore_as: tuple[str, ...]  # kinds the table is restored as (its own first)
    record_max_bytes: int | None = None  # a smaller changelog record: keys in parts


SCENARIOS = (
    Scenario("full", "tumbling:60s,hopping:300s/60s", 30_000, "full", 30_000, None, True,
             160, ("full", "basic")),
    Scenario("basic", "tumbling:60s,hopping:300s/60s", 30_000, "basic", 600_000, 50, False,
             160, ("basic", "full")),
    Scenario("parts", "tumbling:60s", 3_600_000, "full50", 0, None, False, 100, ("full50",),
             record_max_bytes=2_000),
)  # fmt: skip


def aggregates_of(kind: str) -> type[PaneAggregate]:
    return {"full": Aggregate.capped(4), "full50": Aggregate.capped(50), "basic": BasicAggregate}[
        kind
    ]


def new_state(scenario: Scenario, kind: str) -> PartitionState:
    return PartitionState(
        WindowPlan(parse_windows(scenario.windows), scenario.grace_ms),
        scenario.dedup_ttl_ms,
        ANOMALY if scenario.anomaly else None,
        aggregates_of(kind),
        idle_lease_ms=60_000,
        closing_changes=True,
        dedup_max_ids=scenario.dedup_max_ids,
    )


def record(
    scope: str,
    entity: str,
    event_id: str,
    observer: str,
    subject: str,
    metric: str,
    value: float,
    observed_ms: int,
    group: str | None = None,
) -> KeyedObservation:
    return KeyedObservation(
        scope, entity, event_id, observer, subject, group, metric,  # type: ignore[arg-type]
        value, observed_ms, None, 0, 0, 0,
    )  # fmt: skip


def scenario_records(scenario: Scenario) -> list[tuple[KeyedObservation, int]]:
    """(record, received ms): subjects (one not ASCII), a group, two metrics, seven observers
    (past a cap of 4), negative, zero and spiking values, duplicates, 2 s of event time and
    0.25 s of receive time apart, batches of 10 sharing a receive time."""
    rng = random.Random(f"legacy-{scenario.name}")
    subjects = ["s-0", "s-1", "s-2", "sübject-é", "s-4"]
    out: list[tuple[KeyedObservation, int]] = []
    for i in range(scenario.events):
        subject = subjects[i % len(subjects)] if i % 7 else rng.choice(subjects)
        metric = "temp" if i % 3 else "hum"
        value = rng.choice([0.0, -1.5, round(rng.gauss(20, 4), 6), 1e-3])
        if i % 97 == 0:
            value = 500.0  # a spike
        observed = BASE_MS + i * 2_000 - rng.randint(0, 20_000)
        if scenario.name == "parts":
            subject, metric = "big", "temp"
            observed = BASE_MS + i * 30_000 + i
        event_id = f"e{i}-" + "x" * (i % 5) * 20
        observer = f"observer-{rng.randrange(7)}"
        received = RECEIVED_MS + (i // 10) * 2_500
        group = "g-1" if i % 2 else None
        out.append((record("subject", subject, event_id, observer, subject, metric, value,
                           observed, group), received))  # fmt: skip
        if group is not None:
            out.append((record("group", group, event_id, observer, subject, metric, value,
                               observed, group), received))  # fmt: skip
        if i % 23 == 0 and out:
            out.append(out[rng.randrange(len(out))])  # a duplicate, sent again
    return out


def run_scenario(scenario: Scenario) -> dict[str, bytes]:
    """Feed the scenario's records through a state, as the agent does (two sources report
    progress, finals are recorded for queries), persisting every batch into a table."""
    state = new_state(scenario, scenario.kind)
    table: dict[str, bytes] = {}
    batch: list[tuple[KeyedObservation, int]] = []
    records = scenario_records(scenario)
    for n, (rec, received) in enumerate(records):
        batch.append((rec, received))
        if n + 1 < len(records) and records[n + 1][1] == received:
            continue
        for one, at in batch:
            state.offer(one, at)
        mark = max(one.observed_ms for one, _ in batch)
        state.observe(SourceReport(0, mark, 2), received)
        state.observe(SourceReport(1, mark - 40_000, 2), received)
        for final in state.take_finals():
            spec = final.window.spec
            state.record_final(
                final.key, spec.name, final.window.end_ms, insight_record(final, EMITTED_AT)[1]
            )
        list(state.take_changes())
        state.take_closing_changes()
        state.take_anomalies()
        writes, _ = state.take_persist(f"chunk-{received}")
        for name, value in writes.items():
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
        batch.clear()
    return table


def plain(value: Any) -> Any:
    """JSON-ready and exact: floats by `repr` (nan, -0.0 and the last bit kept)."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) and value != 0 else f"f:{value!r}"
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def emission(e: Emission) -> Any:
    window = e.window
    return [list(e.key), window.spec.name, window.start_ms, window.end_ms, e.final,
            plain(list(e.summary))]  # fmt: skip


def probes(scenario: Scenario) -> list[tuple[str, KeyedObservation, int]]:
    """(label, record, received ms): ids of the input again, at three receive times (the
    dedup TTL expires some), new ids, and one late record; for keys the input had."""
    records = scenario_records(scenario)
    last = records[-1][1]
    newest = max(rec.observed_ms for rec, _ in records)
    out: list[tuple[str, KeyedObservation, int]] = []
    for label, at in (("again", last + 1), ("again+30s", last + 30_000), ("later", last + 10**6)):
        for rec, _ in records[:: max(1, len(records) // 25)]:
            newer = record(rec.scope, rec.entity, rec.event_id, rec.observer_id, rec.subject_id,
                           rec.metric, rec.value + 1, newest, rec.group_id)  # fmt: skip
            out.append((label, newer, at))
    first = records[0][0]
    late = record(first.scope, first.entity, "late-1", "o", first.subject_id, first.metric,
                  1.0, BASE_MS - 10**7)  # fmt: skip
    fresh = record(first.scope, first.entity, "new-1", "o", first.subject_id, first.metric,
                   3.0, newest)  # fmt: skip
    out += [("late", late, last + 2), ("new", fresh, last + 2)]
    return out


def outcomes(state: PartitionState, scenario: Scenario) -> dict[str, Any]:
    """What a restored state holds and does: watermark, clock, key and pane counts, the
    form of every pane, queries, then the probes' outcomes, anomalies and all finals."""
    keys = sorted(panes_of(state))
    entities = sorted({key[:2] for key in keys})
    result: dict[str, Any] = {
        "watermark": state.watermark,
        "clock": [
            state.clock.watermark_ms,
            state.clock.sources,
            {str(n): s.watermark_ms for n, s in sorted(state.clock._sources.items())},
        ],
        "keys": state.key_count,
        "panes": state.pane_count,
        "forms": {
            "|".join(key): sorted(
                (p, type(a).__name__, getattr(a, "basic_only", None))
                for p, a in panes_of(state)[key].panes.items()
            )
            for key in keys
        },
        "current": [emission(e) for s, en in entities for e in state.current(s, en)],
        "latest": [
            [s, en, record.decode()] for s, en in entities for record in state.latest_finals(s, en)
        ],
    }
    decisions = []
    for label, rec, at in probes(scenario):
        decisions.append([label, rec.scope, rec.event_id, state.offer(rec, at).value])
    result["decisions"] = decisions
    result["anomalies"] = [plain(list(vars_of(d))) for d in state.take_anomalies()]
    result["finals_before"] = [emission(e) for e in state.take_finals()]
    state.advance(FAR_FUTURE)
    result["finals"] = [emission(e) for e in state.take_finals()]
    return result


def vars_of(detection: Any) -> list[Any]:
    return [getattr(detection, name) for name in detection.__slots__]


def panes_of(state: PartitionState) -> dict[tuple[str, str, str], Any]:
    """The state's keys and their panes (to compare the form each pane is kept in)."""
    return state.panes.keys


def load_table(name: str) -> dict[str, bytes]:
    """A fixture table: logical key -> value, byte for byte as written."""
    table: dict[str, bytes] = {}
    for line in (FIXTURES / f"{name}.tsv").read_bytes().splitlines():
        key, value = line.split(b"\t", 1)
        table[key.decode()] = value
    return table
