"""Ground truth for window aggregates, computed independently of the engine: plain lists,
sorting, `math.fsum` and `statistics` over the raw events of each window."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.runtime.windows import WindowSpec

WindowKey = tuple[str, str, str, str, int, int]  # scope, entity, metric, type, start_ms, end_ms


@dataclass(frozen=True)
class Event:
    """The fields of an observation the aggregates depend on (observed_at in epoch ms)."""

    event_id: str
    observer_id: str
    subject_id: str
    metric: str
    value: float
    observed_ms: int
    group_id: str | None = None


def windows_holding(t_ms: int, specs: Sequence[WindowSpec]) -> list[tuple[str, int, int]]:
    """(type, start, end) of every window holding t, by brute force over aligned starts."""
    found = []
    for spec in specs:
        size, step = spec.size_s * 1000, spec.step_s * 1000
        first = (t_ms - size) // step * step
        for start in range(first, t_ms + 1, step):
            if start <= t_ms < start + size:
                found.append((spec.type, start, start + size))
    return found


def scoped(event: Event) -> list[tuple[str, str]]:
    pairs = [("subject", event.subject_id)]
    if event.group_id is not None:
        pairs.append(("group", event.group_id))
    return pairs


def group_by_window(
    events: Iterable[Event], specs: Sequence[WindowSpec], *, dedup: bool = True
) -> dict[WindowKey, list[Event]]:
    """Events per window and scope, each event_id counted once per scope (`dedup`) or
    every copy counted."""
    buckets: dict[WindowKey, list[Event]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for event in events:
        for scope, entity in scoped(event):
            if dedup and (scope, event.event_id) in seen:
                continue
            seen.add((scope, event.event_id))
            for kind, start, end in windows_holding(event.observed_ms, specs):
                buckets[(scope, entity, event.metric, kind, start, end)].append(event)
    return dict(buckets)


def expected_figures(events: list[Event], size_s: int) -> dict[str, Any]:
    """What a final record of a window holding exactly `events` must say."""
    values = [e.value for e in events]
    ordered = sorted(events, key=lambda e: (e.observed_ms, e.event_id))
    ranked = sorted(values)
    total = math.fsum(values)
    return {
        "count": len(values),
        "sum": total,
        "mean": total / len(values),
        "min": min(values),
        "max": max(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else None,
        "first_value": ordered[0].value,
        "last_value": ordered[-1].value,
        "first_ms": ordered[0].observed_ms,
        "last_ms": ordered[-1].observed_ms,
        "observers": len({e.observer_id for e in events}),
        "rate_per_s": len(values) / size_s,
        "p50": ranked[math.floor(0.5 * (len(values) - 1))],
        "p90": ranked[math.floor(0.9 * (len(values) - 1))],
        "p99": ranked[math.floor(0.99 * (len(values) - 1))],
    }


BASIC_FIGURES = ("count", "sum", "mean", "min", "max", "rate_per_s", "first_ms", "last_ms")


def basic_only(figures: dict[str, Any]) -> dict[str, Any]:
    """What `INSIGHTS_AGGREGATES=basic` says of the same window: the rest is null."""
    return {name: value if name in BASIC_FIGURES else None for name, value in figures.items()}


def assert_matches(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Exact for count/sum/min/max/first/last, 1e-9 relative for mean/stddev, 1% quantiles."""
    for name in ("count", "sum", "min", "max", "first_value", "last_value", "observers"):
        assert actual[name] == expected[name], f"{where}: {name} {actual[name]} != {expected[name]}"
    for name in ("first_ms", "last_ms"):
        assert actual[name] == expected[name], f"{where}: {name}"
    for name in ("mean", "stddev", "rate_per_s"):
        a, e = actual[name], expected[name]
        if e is None:
            assert a is None, f"{where}: {name} {a} != None"
        else:
            assert math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {name} {a} != {e}"
    for name in ("p50", "p90", "p99"):
        a, e = actual[name], expected[name]
        if e is None:
            assert a is None, f"{where}: {name} {a} != None"
            continue
        assert abs(a - e) <= 0.01 * abs(e) + 1e-12, f"{where}: {name} {a} not within 1% of {e}"
