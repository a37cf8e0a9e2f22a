"""The rolling state of one partition: its event-time clock, dedup memory, and the panes of
every (scope, entity, metric). Pure: the Faust agent feeds it observations and persists what it
reports as changed, so the logic is tested without a broker."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

import orjson

from agents.anomaly import AnomalyConfig, BaselineState, Detection
from agents.rolling.aggregate import AGGREGATE_KINDS, OneValue, Pane, PaneAggregate, Summary
from agents.rolling.clock import SourceClock, SourceReport
from agents.rolling.summaries import aggregate_of, window_summaries
from agents.rolling.windows import Window, WindowPlan
from models.codec import right_sized
from models.keyed import KeyedObservation

__all__ = ["Emission", "Outcome", "PartitionState", "StateKey"]

StateKey = tuple[str, str, str]  # (scope, entity, metric)
LatestKey = tuple[str, str, str, str]  # (scope, entity, metric, window family name)
# closing windows, expired panes, next close (`PartitionState._close_plan`)
_ClosePlan = tuple[list[Window], list[int], int | None]

# How long the latest final of a window family stays queryable after its window ended
# (event time): a subject that went quiet still answers for a day. Expired ones are swept
# out at most once per LATEST_SWEEP_MS of event time (so within the hour after).
LATEST_RETENTION_MS = 24 * 3600 * 1000
LATEST_SWEEP_MS = 3600 * 1000
# Dedup ids per changelog record of the dedup journal: an id is at most 128 characters, at
# most 6 bytes each in JSON (a control character's escape), so a record stays < 1 MB.
JOURNAL_CHUNK_IDS = 1024
# The largest changelog value written: below the 1 MiB (1,048,588 B) a topic accepts by
# default. A key whose panes take more is written in parts (`_key_parts`); one pane is
# bounded by construction (observers kept, sketch bins, ids' lengths).
RECORD_MAX_BYTES = 1_000_000
# The metric-name tuples of `_metrics_of`, shared by every entity with the same metrics
# (a handful of combinations in practice); cleared when full, so it stays bounded.
_METRIC_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_METRIC_TUPLES_MAX = 10_000


class Outcome(Enum):
    """What became of one offered observation."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    LATE = "late"
    OVER_CAPACITY = "over_capacity"  # a new key beyond the partition's key budget


class Emission(NamedTuple):
    """One window result to publish: current (final=False) or at close (final=True).

    The summary is taken when the emission is made, so later events cannot change it.
    (A named tuple, as `Summary`: one per record sent.)
    """

    key: StateKey
    window: Window
    summary: Summary
    final: bool


@dataclass(slots=True)
class _KeyState:
    panes: dict[int, Pane] = field(default_factory=dict)
    closed_until: int | None = None
    next_close: int | None = None
    parts: int = 1  # changelog records its panes were last written in


class PartitionState:
    """Everything one partition of the keyed stream needs to aggregate exactly."""

    def __init__(
        self,
        plan: WindowPlan,
        dedup_ttl_ms: int,
        anomaly: AnomalyConfig | None = None,
        aggregates: type[PaneAggregate] = AGGREGATE_KINDS["full"],
        *,
        idle_lease_ms: int = 0,
        closing_changes: bool = False,
        max_keys: int | None = None,
        dedup_max_ids: int | None = None,
    ) -> None:
        """`idle_lease_ms`: how long a source's idle report counts (`SourceClock`);
        `closing_changes`: a window closing with updates not yet taken as changes also
        yields them as a last change (`take_closing_changes`), so the last change of a
        window carries its final figures; `max_keys`: the key budget (a new key beyond it
        is `OVER_CAPACITY`); `dedup_max_ids`: ids remembered at most (the oldest go first,
        before their TTL: `dedup_evicted` counts them)."""
        self.max_keys = max_keys
        self.dedup_max_ids = dedup_max_ids
        self.dedup_evicted = 0
        # (stage, key, exception) of windows that could not be summarised or persisted:
        # that key's work is skipped, the partition goes on (`take_failures`).
        self._failures: list[tuple[str, StateKey, Exception]] = []
        self.plan = plan
        self.dedup_ttl_ms = dedup_ttl_ms  # 0: no dedup (`INSIGHTS_DEDUP_TTL=0s`)
        self.aggregates = aggregates
        self.baselines = BaselineState(anomaly) if anomaly is not None else None
        self._anomalies: list[Detection] = []
        self.clock = SourceClock(idle_lease_ms)
        self.watermark: int | None = None  # the clock's, kept here for the per-event path
        self.closing_changes = closing_changes
        self._closed_changes: list[Emission] = []
        self._keys: dict[StateKey, _KeyState] = {}
        self._heap: list[tuple[int, StateKey]] = []
        self._finals: list[Emission] = []
        self._changed: set[StateKey] = set()
        # Panes touched since the last changes: one pane (the common case) as an int, more
        # as a set (a set per key was ~27 MB at 100,000 keys, all touched in one flush).
        self._dirty: dict[StateKey, int | set[int]] = {}
        self._removed: set[StateKey] = set()
        self._removed_parts: dict[StateKey, int] = {}  # removed keys written in parts
        self._watermark_changed = False
        # dedup: id -> received ms; ids and received ms in arrival order (for expiry; the
        # newest `_unjournaled` of them not in the changelog yet), in two deques rather than
        # one of pairs: no tuple per event for the collector to track; journal chunks.
        self._seen: dict[str, int] = {}
        self._seen_ids: deque[str] = deque()
        self._seen_ms: deque[int] = deque()
        self._unjournaled = 0
        self._expired_at: int | None = None  # the receive time dedup expiry last ran at
        self._chunks: deque[tuple[int, str]] = deque()  # (newest received ms, chunk id)
        self._expired_chunks: list[str] = []
        # queries: metrics per (scope, entity), latest final record per window family
        self._metrics_of: dict[tuple[str, str], tuple[str, ...]] = {}
        self._latest: dict[LatestKey, tuple[int, bytes]] = {}
        self._next_latest_sweep: int | None = None  # watermark of the next sweep
        self._latest_changed: set[LatestKey] = set()
        self._latest_removed: set[LatestKey] = set()
        self._dropped: list[str] = []  # restored keys no setting uses any more

    # -- processing -------------------------------------------------------------------

    def offer(self, obs: KeyedObservation, received_ms: int) -> Outcome:
        """Count one observation unless it is a duplicate or late; closes windows that the
        advancing watermark passes (their finals wait in `take_finals`)."""
        t = obs.observed_ms
        plan, watermark = self.plan, self.watermark
        # (is_late's own first test inlined: a time within grace of the watermark is never
        # late, so in-order input makes no call per event)
        late = (
            watermark is not None and t + plan.grace_ms < watermark and plan.is_late(t, watermark)
        )
        key = (obs.scope, obs.entity, obs.metric)
        state = self._keys.get(key)
        if self.dedup_ttl_ms:
            if received_ms != self._expired_at:  # a batch shares one receive time
                self._expire_seen(received_ms)
                self._expired_at = received_ms
            dedup_key = obs.scope[0] + obs.event_id
            if dedup_key in self._seen:
                return Outcome.DUPLICATE
            if late:
                return Outcome.LATE
            if state is None and self.max_keys is not None and len(self._keys) >= self.max_keys:
                return Outcome.OVER_CAPACITY
            self._seen[dedup_key] = received_ms
            self._seen_ids.append(dedup_key)
            self._seen_ms.append(received_ms)
            self._unjournaled += 1
            if self.dedup_max_ids is not None and len(self._seen_ids) > self.dedup_max_ids:
                self._evict_seen()
        elif late:
            return Outcome.LATE
        elif state is None and self.max_keys is not None and len(self._keys) >= self.max_keys:
            return Outcome.OVER_CAPACITY

        if state is None:
            state = self._keys[key] = _KeyState()
            self._index_metric(key)
        state.closed_until = watermark
        pane = t - t % plan.pane_ms  # plan.pane_of(t)
        aggregate = state.panes.get(pane)
        if aggregate is None:
            state.panes[pane] = OneValue(obs.value, t, obs.event_id, obs.observer_id)
            close = plan.next_close((pane,), watermark)
            if close is not None and (state.next_close is None or close < state.next_close):
                state.next_close = close
                heapq.heappush(self._heap, (close, key))
        else:
            if isinstance(aggregate, OneValue):
                aggregate = state.panes[pane] = self.aggregates.merged((aggregate,))
            aggregate.add(obs.value, t, obs.event_id, obs.observer_id)
        if self.baselines is not None and obs.scope == "subject":
            detection = self.baselines.offer(obs)
            if detection is not None:
                self._anomalies.append(detection)
        dirty = self._dirty.get(key)
        if dirty is None:
            self._dirty[key] = pane
        elif isinstance(dirty, set):
            dirty.add(pane)
        elif dirty != pane:
            self._dirty[key] = {dirty, pane}
        self._changed.add(key)
        return Outcome.COUNTED

    def observe(self, report: SourceReport, now_ms: int) -> None:
        """A source's progress (after the records it sent with it were offered): moves the
        watermark to the minimum over the sources and closes what it passes."""
        self._watermark_changed = True
        moved = self.clock.observe(report, now_ms)
        if moved is not None:
            self.advance(moved)

    def advance(self, watermark_ms: int) -> None:
        """Move the watermark forward (never back) and close every window it passes."""
        self.clock.advance(watermark_ms)
        if self.watermark is not None and watermark_ms <= self.watermark:
            return
        self.watermark = watermark_ms
        self._watermark_changed = True
        heap = self._heap
        if not heap or heap[0][0] > watermark_ms:
            return  # nothing closes (per in-order event: no more work)
        plans: dict[tuple[tuple[int, ...], int], _ClosePlan] = {}
        while heap and heap[0][0] <= watermark_ms:
            close, key = heapq.heappop(heap)
            state = self._keys.get(key)
            if state is None or state.next_close != close:
                continue  # stale heap entry
            self._close(key, state, close, watermark_ms, plans)

    def _close(
        self,
        key: StateKey,
        state: _KeyState,
        due: int,
        watermark_ms: int,
        plans: dict[tuple[tuple[int, ...], int], _ClosePlan],
    ) -> None:
        """Emit the finals of a key's windows the watermark passed, drop the panes no open
        window holds, and schedule its next close (`due`: the one now reached). What closes
        follows from the key's panes and `due` alone (no window of its panes closes between
        its last close and `due`): keys with the same ones (most, at one watermark: windows
        are aligned) share one `_ClosePlan`, from `plans`."""
        shape = (tuple(state.panes), due)
        close_plan = plans.get(shape)
        if close_plan is None:
            close_plan = plans[shape] = self._close_plan(shape[0], due, watermark_ms)
        closing, expired, next_close = close_plan
        touched = self._dirty.get(key) if self.closing_changes else None
        try:
            summaries = self._summaries(state, closing, per_observer=True)
        except Exception as exc:  # one key's content: its finals are lost, not the partition
            self._failures.append(("close", key, exc))
            summaries = []
        for window, summary in summaries:
            if touched is not None and _holds_any(window, touched):
                self._closed_changes.append(Emission(key, window, summary, final=False))
            self._finals.append(Emission(key, window, summary, final=True))
        state.closed_until = watermark_ms
        for pane in expired:
            del state.panes[pane]  # also dirty: `take_changes` skips panes gone
        if not state.panes:
            del self._keys[key]
            self._dirty.pop(key, None)
            metrics = tuple(m for m in self._metrics_of.get(key[:2], ()) if m != key[2])
            if metrics:
                self._metrics_of[key[:2]] = _shared(metrics)
            else:
                self._metrics_of.pop(key[:2], None)
            self._changed.discard(key)
            self._removed.add(key)
            if state.parts > 1:
                self._removed_parts[key] = state.parts
            return
        self._changed.add(key)
        state.next_close = next_close
        if next_close is not None:
            heapq.heappush(self._heap, (next_close, key))

    def _close_plan(self, panes: tuple[int, ...], due: int, watermark_ms: int) -> _ClosePlan:
        """For a key holding `panes` whose next close is `due`: the windows that close by
        `watermark_ms`, the panes then expired, the next close of the panes left."""
        plan = self.plan
        closing = plan.windows_closing(panes, due - 1, watermark_ms)
        expired = [p for p in panes if plan.pane_expired(p, watermark_ms)]
        left = [p for p in panes if p not in expired]
        return closing, expired, plan.next_close(left, watermark_ms) if left else None

    def _open_windows(self, panes: Iterable[int]) -> set[Window]:
        """The windows holding any of `panes` that are still open."""
        watermark, grace = self.watermark, self.plan.grace_ms
        return {
            w
            for pane in panes
            for w in self.plan.windows_of(pane)
            if watermark is None or w.end_ms + grace > watermark
        }

    def _summaries(
        self, state: _KeyState, windows: list[Window], *, per_observer: bool = False
    ) -> list[tuple[Window, Summary]]:
        return window_summaries(
            state.panes, windows, self.plan.pane_ms, self.aggregates, per_observer=per_observer
        )

    def _evict_seen(self) -> None:
        """Forget the oldest remembered id (over `dedup_max_ids`). Its journal chunk stays
        until its TTL; a restore trims to the cap again."""
        received, dedup_key = self._seen_ms.popleft(), self._seen_ids.popleft()
        if self._seen.get(dedup_key) == received:
            del self._seen[dedup_key]
        self._unjournaled = min(self._unjournaled, len(self._seen_ids))
        self.dedup_evicted += 1

    def _expire_seen(self, now_ms: int) -> None:
        horizon = now_ms - self.dedup_ttl_ms
        ids, times = self._seen_ids, self._seen_ms
        while times and times[0] <= horizon:
            received, dedup_key = times.popleft(), ids.popleft()
            if self._seen.get(dedup_key) == received:
                del self._seen[dedup_key]
        chunks = self._chunks
        while chunks and chunks[0][0] <= horizon:
            self._expired_chunks.append(chunks.popleft()[1])

    # -- what to publish --------------------------------------------------------------

    def take_finals(self) -> list[Emission]:
        """Finals of the windows closed since the last call, in close order."""
        finals, self._finals = self._finals, []
        return finals

    def take_closing_changes(self) -> list[Emission]:
        """With `closing_changes`: the last changes of windows closed since the last call
        that had updates no change carried yet (their figures are the finals')."""
        changes, self._closed_changes = self._closed_changes, []
        return changes

    def failed(self, stage: str, key: StateKey, exc: Exception) -> None:
        """Keep a failure found outside the state (a record that could not be rendered)."""
        self._failures.append((stage, key, exc))

    def take_failures(self) -> list[tuple[str, StateKey, Exception]]:
        """Windows whose figures could not be made, rendered or written since the last call:
        (stage `close`, `changes`, `render` or `persist`, key, exception)."""
        failures, self._failures = self._failures, []
        return failures

    def take_anomalies(self) -> list[Detection]:
        """Anomalies found since the last call, in arrival order."""
        anomalies, self._anomalies = self._anomalies, []
        return anomalies

    def take_changes(self) -> Iterator[Emission]:
        """Current figures of every open window touched since the last call, made one key
        at a time as they are consumed (a flush of 100k keys never holds them all). Consume
        it whole, with no other call on this state in between."""
        dirty, self._dirty = self._dirty, {}
        # Keys touched in the same panes have the same open windows (windows are aligned).
        open_windows: dict[tuple[int, ...], list[Window]] = {}
        for key, touched in dirty.items():
            state = self._keys.get(key)
            if state is None:
                continue
            if isinstance(touched, set):
                panes = tuple(sorted(p for p in touched if p in state.panes))
            else:
                panes = (touched,) if touched in state.panes else ()
            windows = open_windows.get(panes)
            if windows is None:
                windows = open_windows[panes] = sorted(self._open_windows(panes))
            try:
                summaries = self._summaries(state, windows)
            except Exception as exc:  # that key's changes are skipped this time
                self._failures.append(("changes", key, exc))
                continue
            for window, summary in summaries:
                yield Emission(key, window, summary, final=False)

    # -- queries -----------------------------------------------------------------------

    def current(self, scope: str, entity: str, metric: str | None = None) -> list[Emission]:
        """Figures of every open window of an entity (all metrics, or one)."""
        metrics = sorted(self._metrics_of.get((scope, entity), ()))
        result: list[Emission] = []
        for name in metrics:
            if metric is not None and name != metric:
                continue
            key = (scope, entity, name)
            state = self._keys[key]
            windows = self._open_windows(state.panes)
            ordered = sorted(windows, key=lambda w: (w.spec.name, w.start_ms))
            for window, summary in self._summaries(state, ordered):
                result.append(Emission(key, window, summary, final=False))
        return result

    def record_final(self, key: StateKey, family: str, end_ms: int, record: bytes) -> None:
        """Remember the newest final record of a window family, for queries."""
        latest_key: LatestKey = (*key, family)
        previous = self._latest.get(latest_key)
        if previous is None or end_ms >= previous[0]:
            self._latest[latest_key] = (end_ms, right_sized(record))
            self._latest_changed.add(latest_key)
            self._latest_removed.discard(latest_key)

    def latest_finals(self, scope: str, entity: str, metric: str | None = None) -> list[bytes]:
        """The newest final record of each (metric, window family) of an entity."""
        return [
            record
            for (s, e, m, _), (_, record) in sorted(self._latest.items())
            if s == scope and e == entity and (metric is None or m == metric)
        ]

    def _expire_latest(self) -> None:
        """Drop the latest finals whose window ended a day (`LATEST_RETENTION_MS`) before the
        watermark, and the anomaly baselines past their TTL: a sweep over them, once per
        `LATEST_SWEEP_MS` of event time. (Not a heap
        of every final recorded: it held one entry per final of the last day, ~290 million
        for 100,000 keys on 1-minute windows.)"""
        watermark = self.watermark
        if watermark is None or (
            self._next_latest_sweep is not None and watermark < self._next_latest_sweep
        ):
            return
        self._next_latest_sweep = watermark + LATEST_SWEEP_MS
        if self.baselines is not None:
            self.baselines.expire(watermark)
        horizon = watermark - LATEST_RETENTION_MS
        expired = [key for key, (end_ms, _) in self._latest.items() if end_ms < horizon]
        for latest_key in expired:
            del self._latest[latest_key]
            self._latest_changed.discard(latest_key)
            self._latest_removed.add(latest_key)

    def _index_metric(self, key: StateKey) -> None:
        known = self._metrics_of.get(key[:2], ())
        if key[2] not in known:
            metrics = (*known, key[2])
            self._metrics_of[key[:2]] = _shared(metrics)

    @property
    def key_count(self) -> int:
        """Live (scope, entity, metric) keys."""
        return len(self._keys)

    @property
    def pane_count(self) -> int:
        """Live panes over all keys."""
        return sum(len(s.panes) for s in self._keys.values())

    # -- persistence (the changelog) -----------------------------------------------------

    def _pane_of_state(self, state: list[Any]) -> Pane:
        one = OneValue.of_state(state, self.aggregates)
        return one if one is not None else self.aggregates.from_state(state)

    def take_persist(self, chunk_id: str) -> tuple[dict[str, bytes | None], int]:
        """What changed since the last call, as logical key -> value (None deletes).

        `chunk_id` names the dedup journal chunks written now (unique within the partition).
        Returns the writes and how many keys they cover.
        """
        writes: dict[str, bytes | None] = {}
        for key in self._changed:
            state = self._keys[key]
            try:
                panes = [
                    [p, aggregate_of([a], self.aggregates).to_state()]
                    for p, a in state.panes.items()
                ]
                record = _dumps_kept([state.closed_until, panes])
                parts = [record] if len(record) <= RECORD_MAX_BYTES else _key_parts(state, panes)
            except Exception as exc:  # not persisted: the last state written stays
                self._failures.append(("persist", key, exc))
                continue
            for i, part in enumerate(parts):
                writes[_key_name("a", *key, *((i,) if i else ()))] = part
            for i in range(len(parts), state.parts):  # parts of a larger write before
                writes[_key_name("a", *key, i)] = None
            state.parts = len(parts)
        for key in self._removed:
            writes[_key_name("a", *key)] = None
            for i in range(1, self._removed_parts.pop(key, 1)):
                writes[_key_name("a", *key, i)] = None
        self._changed.clear()
        self._removed.clear()
        if self._watermark_changed:
            writes[_key_name("w")] = _dumps_kept(self.clock.snapshot())
            self._watermark_changed = False
        # In chunks of a bounded size (an id is up to 129 characters): a journal record
        # stays far below the 1 MiB a broker accepts by default, however big the flush.
        # (Ids expired before they were journaled are left out: they are forgotten anyway.)
        new = min(self._unjournaled, len(self._seen_ids))
        ids = list(itertools.islice(reversed(self._seen_ids), new))[::-1]
        times = list(itertools.islice(reversed(self._seen_ms), new))[::-1]
        for start in range(0, new, JOURNAL_CHUNK_IDS):
            end = start + JOURNAL_CHUNK_IDS
            name = f"{chunk_id}.{start // JOURNAL_CHUNK_IDS}"
            entries = list(zip(ids[start:end], times[start:end], strict=True))
            writes[_key_name("d", name)] = _dumps_kept(entries)
            self._chunks.append((max(times[start:end]), name))
        self._unjournaled = 0
        for expired in self._expired_chunks:
            writes[_key_name("d", expired)] = None
        self._expired_chunks.clear()
        self._expire_latest()  # (and the baselines not updated for their TTL)
        if self.baselines is not None:
            writes.update(self.baselines.take_persist())
        for name in self._dropped:
            writes[name] = None
        self._dropped.clear()
        for latest_key in self._latest_changed:
            end_ms, record = self._latest[latest_key]
            writes[_key_name("f", *latest_key)] = _dumps_kept([end_ms, record.decode()])
        for latest_key in self._latest_removed:
            writes[_key_name("f", *latest_key)] = None
        self._latest_changed.clear()
        self._latest_removed.clear()
        return writes, len(writes)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild from persisted logical key -> value pairs (after recovery)."""
        chunks: list[tuple[int, str, list[Any]]] = []
        # A subject's or metric's name appears in several keys (state, baseline, latest
        # final): one string each, not one per key parsed (~250 B per state key restored).
        names: dict[str, str] = {}
        for name, raw in items:
            parts = [
                names.setdefault(part, part) if type(part) is str else part
                for part in orjson.loads(name)
            ]
            value = orjson.loads(raw)
            kind = parts[0]
            if kind == "w":
                self.clock.restore(value)
                self.watermark = self.clock.watermark_ms
            elif kind == "a":
                key: StateKey = (parts[1], parts[2], parts[3])
                closed_until, panes = value
                state = self._keys.get(key) or _KeyState()
                state.panes.update((int(p), self._pane_of_state(a)) for p, a in panes)
                if len(parts) == 4:  # the first part (or the whole key)
                    state.closed_until = closed_until
                state.parts = max(state.parts, int(parts[4]) + 1 if len(parts) > 4 else 1)
                if key not in self._keys:
                    self._keys[key] = state
                    self._index_metric(key)
            elif kind == "f":
                latest_key: LatestKey = (parts[1], parts[2], parts[3], parts[4])
                end_ms, record = value
                self._latest[latest_key] = (int(end_ms), str(record).encode())
            elif kind == "b":
                if self.baselines is not None:
                    self.baselines.restore(parts[1], parts[2], raw)
                else:  # anomaly detection turned off since: the baselines go
                    self._dropped.append(name)
            elif kind == "d":
                entries = [(str(k), int(ts)) for k, ts in value]
                newest = max((ts for _, ts in entries), default=0)
                chunks.append((newest, parts[1], entries))
        for newest, chunk_id, entries in sorted(chunks):
            if not self.dedup_ttl_ms:  # dedup turned off since: the journal goes
                self._expired_chunks.append(chunk_id)
                continue
            self._chunks.append((newest, chunk_id))
            for dedup_key, ts in entries:
                self._seen[dedup_key] = ts
        order = sorted((ts, k) for k, ts in self._seen.items())
        if self.dedup_max_ids is not None and len(order) > self.dedup_max_ids:
            for _, dedup_key in order[: len(order) - self.dedup_max_ids]:
                del self._seen[dedup_key]
            order = order[len(order) - self.dedup_max_ids :]
        self._seen_ms = deque(ts for ts, _ in order)
        self._seen_ids = deque(k for _, k in order)
        for key, state in self._keys.items():
            state.next_close = self.plan.next_close(state.panes, state.closed_until)
            if state.next_close is not None:
                heapq.heappush(self._heap, (state.next_close, key))
        # Windows the restored watermark already passed close now (e.g. state written
        # before their final was sent).
        if self.watermark is not None:
            watermark, self.watermark = self.watermark, None
            self.advance(watermark)
            self._watermark_changed = False


def _key_parts(state: _KeyState, panes: list[list[Any]]) -> list[bytes]:
    """A key's record too large for one changelog value, in parts of whole panes: the first
    `[closed_until, panes]`, the others `[null, panes]` (each below `RECORD_MAX_BYTES`, as
    one pane is)."""
    parts: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for pane in panes:
        raw = orjson.dumps(pane)
        if group and size + len(raw) + 64 > RECORD_MAX_BYTES:
            parts.append(_joined(state.closed_until if not parts else None, group))
            group, size = [], 0
        group.append(raw)
        size += len(raw) + 1
    parts.append(_joined(state.closed_until if not parts else None, group))
    return parts


def _joined(closed_until: int | None, panes: list[bytes]) -> bytes:
    return b"[" + orjson.dumps(closed_until) + b",[" + b",".join(panes) + b"]]"


def _holds_any(window: Window, panes: int | set[int]) -> bool:
    """Whether `window` holds the pane `panes` or any of them."""
    if isinstance(panes, int):
        return window.start_ms <= panes < window.end_ms
    return any(window.start_ms <= p < window.end_ms for p in panes)


def _shared(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple per combination of metric names, not one per entity (~70 B a key)."""
    if len(_METRIC_TUPLES) >= _METRIC_TUPLES_MAX:
        _METRIC_TUPLES.clear()
    return _METRIC_TUPLES.setdefault(metrics, metrics)


def _key_name(*parts: Any) -> str:
    return orjson.dumps(parts).decode()


def _dumps_kept(value: Any) -> bytes:
    """orjson bytes in a buffer of their own size: a flush of 100,000 keys holds all its
    writes at once, and orjson's >= 4 KiB buffers made that 400 MB more (`right_sized`)."""
    return right_sized(orjson.dumps(value))
