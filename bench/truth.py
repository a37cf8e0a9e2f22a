"""Ground truth: what every candidate should output for the exact events preloaded.

Computed from the bytes of the BenchEvents (plain `json` and `datetime`, nothing of the
worker's code) and what the generator says each record is (`Kind`), with each candidate's
semantics (`semantics_of`):
- windows: epoch-aligned `[s, s + size)` with `s % step == 0` (tumbling: step = size);
- scopes: the subject, and for our worker also the group (`group_id`): per (group, metric)
  over the group's subjects (docs/contracts.md);
- dedup by `event_id`, per scope (our worker unless INSIGHTS_DEDUP_TTL=0s; nobody else);
- invalid records are excluded for everyone; late ones (hours before the stream) are dropped
  by the watermark-based candidates (ours, Quix) and counted in their old windows by those
  without a lateness rule (raw aggregate, naive Faust: both fold every record into the
  window of its time). Our worker drops a late event only once its keyed partition has a
  watermark (every input partition heard from): before that nothing is late, by the
  contract (docs/event-time.md), and a backlog read within one flush interval is all
  before it. Which ones it counted is known from its dead letters only (`late`, naming
  the scope): `counting_late` makes the truth of the others counted;
- a window is certainly closed when end + grace + CLOSE_MARGIN_MS <= the newest event time
  of the stream: its final must be out (finals of other windows may be, and must be right).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.data import BenchEvent
from bench.roster import Candidate
from streams.cli.generator import Kind
from streams.runtime import durations
from streams.runtime.windows import parse_windows as _parse_windows

__all__ = [
    "CLOSE_MARGIN_MS",
    "Agg",
    "Parsed",
    "Semantics",
    "Truth",
    "WindowKey",
    "compute",
    "parse_events",
    "semantics_of",
    "window_starts",
]

CLOSE_MARGIN_MS = 60_000  # beyond the grace: the slowest partition's watermark lags
DEFAULT_WINDOWS = "tumbling:60s,hopping:300s/60s"  # our worker's default INSIGHTS_WINDOWS
TUMBLING_60S = ((60_000, 60_000),)
GRACE_MS = 30_000

# (scope, subject or group id, metric, window start ms, window size ms)
WindowKey = tuple[str, str, str, int, int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Semantics:
    """What a candidate aggregates: windows as (size ms, step ms), scopes, dedup, lateness."""

    windows: tuple[tuple[int, int], ...]
    group_scope: bool = False
    dedup: bool = False
    drop_late: bool = True
    grace_ms: int = GRACE_MS


@dataclass
class Agg:
    """count/sum/min/max of a window (sum in arrival order, as the candidates add)."""

    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    @property
    def mean(self) -> float:
        return self.sum / self.count

    @classmethod
    def of(cls, values: Iterable[float]) -> Agg:
        agg = cls()
        for value in values:
            agg.add(value)
        return agg


@dataclass(frozen=True, slots=True)
class Parsed:
    """An input record as the truth reads it (None fields: an invalid record)."""

    kind: Kind
    event_id: str | None
    subject: str | None
    group: str | None
    metric: str | None
    value: float | None
    observed_ms: int | None


@dataclass
class Truth:
    """Expected aggregates per window, which windows are certainly closed, and counts."""

    semantics: Semantics
    aggregates: dict[WindowKey, Agg]
    closed: frozenset[WindowKey]
    newest_ms: int | None
    input_events: int  # records preloaded
    counted: int  # (scope, event) pairs counted: what our worker's progress reports
    # Per window, its values in send order (kept on request: for a candidate measured on
    # part of the input, whose last update must be the aggregate of a prefix).
    sequences: dict[WindowKey, list[float]] | None = field(default=None, repr=False)
    # The late events left out (drop_late), for `counting_late`
    late: list[Parsed] = field(default_factory=list, repr=False)
    invalid: int = 0  # invalid records in the input

    def late_pairs(self) -> set[tuple[str, str]]:
        """(scope, event_id) of every late event left out, per scope it would count in."""
        return {(scope, p.event_id) for p in self.late for scope, _ in self._scopes(p)}

    def _scopes(self, p: Parsed) -> list[tuple[str, str]]:
        assert p.subject is not None
        scopes = [("subject", p.subject)]
        if self.semantics.group_scope and p.group is not None:
            scopes.append(("group", p.group))
        return scopes

    def counting_late(self, refused: set[tuple[str, str]]) -> Truth:
        """The truth had the candidate counted every late event, per scope, but the
        (scope, event_id) pairs in `refused` (its dead letters): each counted one in all of
        its windows of that scope (its windows are closed at once when they close)."""
        aggregates = dict(self.aggregates)
        sequences = None if self.sequences is None else dict(self.sequences)
        touched: set[WindowKey] = set()
        counted = self.counted
        for p in self.late:
            assert p.metric is not None and p.value is not None and p.observed_ms is not None
            for scope, entity in self._scopes(p):
                if (scope, p.event_id) in refused:
                    continue
                counted += 1
                for size, step in self.semantics.windows:
                    for start in window_starts(p.observed_ms, size, step):
                        wk = (scope, entity, p.metric, start, size)
                        if wk not in touched:
                            old = aggregates.get(wk)
                            aggregates[wk] = Agg() if old is None else replace(old)
                            if sequences is not None:
                                sequences[wk] = list(sequences.get(wk, []))
                            touched.add(wk)
                        aggregates[wk].add(p.value)
                        if sequences is not None:
                            sequences[wk].append(p.value)
        closed = self.closed | {wk for wk in touched if self._closed(wk)}
        return replace(
            self, aggregates=aggregates, closed=closed, counted=counted, sequences=sequences
        )

    def _closed(self, wk: WindowKey) -> bool:
        end = wk[3] + wk[4]
        return self.newest_ms is not None and (
            end + self.semantics.grace_ms + CLOSE_MARGIN_MS <= self.newest_ms
        )

    def progress_total(self, candidate: Candidate) -> int:
        """The candidate's progress count once it has processed every input record: every
        candidate counts input messages, whatever it made of them (our worker's hook in
        bench/candidates/insights_worker.py included)."""
        return self.input_events

    def input_records(self, candidate: Candidate, progress: int) -> int:
        """Input records a progress count of the candidate stands for (about)."""
        total = self.progress_total(candidate)
        return min(self.input_events, round(progress * self.input_events / max(1, total)))


def _duration_ms(text: str) -> int:
    """A setting's duration (the product's own parser: this is configuration, not truth)."""
    return round(durations.parse_duration(text) * 1000)


def parse_windows(text: str) -> tuple[tuple[int, int], ...]:
    """`tumbling:60s,hopping:300s/60s` -> ((60000, 60000), (300000, 60000))."""
    return tuple((w.size_s * 1000, w.step_s * 1000) for w in _parse_windows(text))


def semantics_of(candidate: Candidate) -> Semantics | None:
    """The candidate's aggregation semantics; None for one without aggregate output."""
    if candidate.kind == "insights":
        settings = dict(candidate.settings)
        dedup = _duration_ms(settings.get("INSIGHTS_DEDUP_TTL", "600s")) > 0
        grace = _duration_ms(settings.get("INSIGHTS_GRACE", "30s"))
        windows = parse_windows(candidate.windows or DEFAULT_WINDOWS)
        return Semantics(windows, group_scope=True, dedup=dedup, drop_late=True, grace_ms=grace)
    if candidate.kind == "quix":
        return Semantics(TUMBLING_60S, drop_late=True)
    if candidate.kind == "raw":
        if candidate.mode == "finals":
            return Semantics(TUMBLING_60S, drop_late=True)
        if candidate.mode == "finals-groups":
            return Semantics(TUMBLING_60S, group_scope=True, drop_late=True)
        return Semantics(TUMBLING_60S, drop_late=False) if candidate.mode == "aggregate" else None
    if candidate.kind == "faust":
        return Semantics(TUMBLING_60S, drop_late=False)
    msg = f"no ground truth for candidate kind {candidate.kind!r}"
    raise ValueError(msg)


def epoch_ms(observed_at: Any) -> int:
    """`observed_at` (integer epoch ms or RFC 3339 with an offset) -> epoch ms."""
    if isinstance(observed_at, bool):
        msg = f"observed_at {observed_at!r}"
        raise TypeError(msg)
    if isinstance(observed_at, int):
        return observed_at
    at = datetime.fromisoformat(observed_at)
    if at.tzinfo is None:
        msg = f"naive observed_at {observed_at!r}"
        raise ValueError(msg)
    return (at - _EPOCH) // timedelta(milliseconds=1)


def parse_events(events: Iterable[BenchEvent]) -> list[Parsed]:
    """Read every record's bytes once (for all semantics). A valid record whose parsed time
    differs from the one the generator stated is a bench bug: it raises."""
    out = []
    for event in events:
        if event.kind is Kind.INVALID:
            out.append(Parsed(event.kind, None, None, None, None, None, None))
            continue
        doc = json.loads(event.value)
        at = epoch_ms(doc["observed_at"])
        if at != event.observed_ms:
            stated = event.observed_ms
            msg = f"event {doc['event_id']}: observed_at {at} != the generator's {stated}"
            raise ValueError(msg)
        value = doc["value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"event {doc['event_id']}: value {value!r}"
            raise TypeError(msg)
        out.append(
            Parsed(
                event.kind,
                doc["event_id"],
                doc["subject_id"],
                doc.get("group_id"),
                doc["metric"],
                float(value),
                at,
            )
        )
    return out


def window_starts(at_ms: int, size_ms: int, step_ms: int) -> list[int]:
    """Starts of the epoch-aligned windows `[s, s + size)`, `s % step == 0`, holding at_ms."""
    last = at_ms - at_ms % step_ms
    return list(range(last - size_ms + step_ms, last + 1, step_ms))


def compute(parsed: list[Parsed], semantics: Semantics, *, sequences: bool = False) -> Truth:
    """The expected aggregates of `parsed` (in send order) under `semantics`."""
    aggregates: dict[WindowKey, Agg] = {}
    seqs: dict[WindowKey, list[float]] | None = {} if sequences else None
    seen: set[tuple[str, str, str]] = set()
    counted = 0
    newest: int | None = None
    late: list[Parsed] = []
    invalid = 0
    for p in parsed:
        if p.kind is Kind.INVALID:
            invalid += 1
            continue
        if p.kind is Kind.LATE and semantics.drop_late:
            late.append(p)
            continue
        assert p.subject is not None and p.metric is not None and p.event_id is not None
        assert p.value is not None and p.observed_ms is not None
        scopes = [("subject", p.subject)]
        if semantics.group_scope and p.group is not None:
            scopes.append(("group", p.group))
        for scope, entity in scopes:
            if semantics.dedup:
                remembered = (scope, entity, p.event_id)
                if remembered in seen:
                    continue
                seen.add(remembered)
            counted += 1
            for size, step in semantics.windows:
                for start in window_starts(p.observed_ms, size, step):
                    wk = (scope, entity, p.metric, start, size)
                    agg = aggregates.get(wk)
                    if agg is None:
                        agg = aggregates[wk] = Agg()
                    agg.add(p.value)
                    if seqs is not None:
                        seqs.setdefault(wk, []).append(p.value)
        if p.kind is not Kind.LATE:
            newest = p.observed_ms if newest is None else max(newest, p.observed_ms)
    truth = Truth(
        semantics, aggregates, frozenset(), newest, len(parsed), counted, seqs, late, invalid
    )
    truth.closed = frozenset(wk for wk in aggregates if truth._closed(wk))
    return truth
