"""The panes of every (scope, entity, metric) of one partition: an observation counts into
one pane; windows close as the watermark passes them, their finals and the changes of the
open ones are reported, and queries read the open ones. Pure."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from agents.rolling.aggregate import OneValue, Pane, PaneAggregate, Summary
from agents.rolling.changelog import PanesRecord
from agents.rolling.summaries import window_summaries
from models.keyed import KeyedObservation
from streams.runtime.windows import Window, WindowPlan

__all__ = ["Emission", "KeyPanes", "Panes", "StateKey"]

StateKey = tuple[str, str, str]  # (scope, entity, metric)
# closing windows, expired panes, next close (`Panes._close_plan`)
_ClosePlan = tuple[list[Window], list[int], int | None]
# The metric-name tuples of `Panes._metrics_of`, shared by every entity with the same
# metrics (a handful of combinations in practice); cleared when full, so it stays bounded.
_METRIC_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_METRIC_TUPLES_MAX = 10_000


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
class KeyPanes:
    """One key's panes (start ms -> pane), the watermark its windows were closed up to, and
    its next close (the heap's entry for it)."""

    panes: dict[int, Pane] = field(default_factory=dict)
    closed_until: int | None = None
    next_close: int | None = None


class Panes:
    """The panes of a partition's keys, and the windows closed and changed over them."""

    def __init__(
        self,
        plan: WindowPlan,
        aggregates: type[PaneAggregate],
        failures: list[tuple[str, StateKey, Exception]],
        *,
        closing_changes: bool = False,
    ) -> None:
        """`failures`: where a key whose windows cannot be summarised goes ("close",
        "changes"), its work skipped; `closing_changes`: see `take_closing_changes`."""
        self.plan = plan
        self.aggregates = aggregates
        self.closing_changes = closing_changes
        self.watermark: int | None = None  # windows are closed up to it
        self.keys: dict[StateKey, KeyPanes] = {}
        self._failures = failures
        self._heap: list[tuple[int, StateKey]] = []
        self._finals: list[Emission] = []
        self._closed_changes: list[Emission] = []
        # Panes touched since the last changes: one pane (the common case) as an int, more
        # as a set (a set per key was ~27 MB at 100,000 keys, all touched in one flush).
        self._dirty: dict[StateKey, int | set[int]] = {}
        self._changed: set[StateKey] = set()  # since the last snapshot
        self._removed: set[StateKey] = set()
        self._metrics_of: dict[tuple[str, str], tuple[str, ...]] = {}  # for queries

    def add(self, key: StateKey, state: KeyPanes | None, obs: KeyedObservation) -> None:
        """Count `obs` (not late) into its pane of `key`, whose panes are `state` (None: a
        new key)."""
        t = obs.observed_ms
        plan, watermark = self.plan, self.watermark
        if state is None:
            state = self.keys[key] = KeyPanes()
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
        dirty = self._dirty.get(key)
        if dirty is None:
            self._dirty[key] = pane
        elif isinstance(dirty, set):
            dirty.add(pane)
        elif dirty != pane:
            self._dirty[key] = {dirty, pane}
        self._changed.add(key)

    def close(self, watermark_ms: int) -> None:
        """Move the watermark to `watermark_ms` (forward only: the caller's check) and close
        every window it passes."""
        self.watermark = watermark_ms
        heap = self._heap
        if not heap or heap[0][0] > watermark_ms:
            return  # nothing closes (per in-order event: no more work)
        plans: dict[tuple[tuple[int, ...], int], _ClosePlan] = {}
        while heap and heap[0][0] <= watermark_ms:
            close, key = heapq.heappop(heap)
            state = self.keys.get(key)
            if state is None or state.next_close != close:
                continue  # stale heap entry
            self._close(key, state, close, watermark_ms, plans)

    def _close(
        self,
        key: StateKey,
        state: KeyPanes,
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
            del self.keys[key]
            self._dirty.pop(key, None)
            metrics = tuple(m for m in self._metrics_of.get(key[:2], ()) if m != key[2])
            if metrics:
                self._metrics_of[key[:2]] = _shared(metrics)
            else:
                self._metrics_of.pop(key[:2], None)
            self._changed.discard(key)
            self._removed.add(key)
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
        self, state: KeyPanes, windows: list[Window], *, per_observer: bool = False
    ) -> list[tuple[Window, Summary]]:
        return window_summaries(
            state.panes, windows, self.plan.pane_ms, self.aggregates, per_observer=per_observer
        )

    # -- what to publish ----------------------------------------------------------------

    def take_finals(self) -> list[Emission]:
        """Finals of the windows closed since the last call, in close order."""
        finals, self._finals = self._finals, []
        return finals

    def take_closing_changes(self) -> list[Emission]:
        """With `closing_changes`: the last changes of windows closed since the last call
        that had updates no change carried yet (their figures are the finals')."""
        changes, self._closed_changes = self._closed_changes, []
        return changes

    def take_changes(self) -> Iterator[Emission]:
        """Current figures of every open window touched since the last call, made one key
        at a time as they are consumed (a flush of 100k keys never holds them all). Consume
        it whole, with no other call on these panes in between."""
        dirty, self._dirty = self._dirty, {}
        # Keys touched in the same panes have the same open windows (windows are aligned).
        open_windows: dict[tuple[int, ...], list[Window]] = {}
        for key, touched in dirty.items():
            state = self.keys.get(key)
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

    def current(self, scope: str, entity: str, metric: str | None = None) -> list[Emission]:
        """Figures of every open window of an entity (all metrics, or one)."""
        metrics = sorted(self._metrics_of.get((scope, entity), ()))
        result: list[Emission] = []
        for name in metrics:
            if metric is not None and name != metric:
                continue
            key = (scope, entity, name)
            state = self.keys[key]
            windows = self._open_windows(state.panes)
            ordered = sorted(windows, key=lambda w: (w.spec.name, w.start_ms))
            for window, summary in self._summaries(state, ordered):
                result.append(Emission(key, window, summary, final=False))
        return result

    def _index_metric(self, key: StateKey) -> None:
        known = self._metrics_of.get(key[:2], ())
        if key[2] not in known:
            self._metrics_of[key[:2]] = _shared((*known, key[2]))

    @property
    def pane_count(self) -> int:
        """Live panes over all keys."""
        return sum(len(s.panes) for s in self.keys.values())

    # -- persistence ----------------------------------------------------------------------

    def snapshot(self) -> dict[StateKey, PanesRecord | None]:
        """The keys changed since the last snapshot, each with all its panes (None: the key
        is gone). Their panes are the live ones: encode them before the next call here."""
        records: dict[StateKey, PanesRecord | None] = {
            key: PanesRecord(state.closed_until, state.panes)
            for key in self._changed
            for state in (self.keys[key],)
        }
        records.update(dict.fromkeys(self._removed))
        self._changed.clear()
        self._removed.clear()
        return records

    def restore(self, records: Iterable[tuple[StateKey, PanesRecord]]) -> None:
        """Rebuild from every record of the changelog (a key written in parts gives one
        record a part: `closed_until` is in the first), then schedule each key's close."""
        for key, record in records:
            state = self.keys.get(key)
            if state is None:
                state = self.keys[key] = KeyPanes(record.panes)
                self._index_metric(key)
            else:
                state.panes.update(record.panes)
            if record.closed_until is not None:
                state.closed_until = record.closed_until
        for key, state in self.keys.items():
            state.next_close = self.plan.next_close(state.panes, state.closed_until)
            if state.next_close is not None:
                heapq.heappush(self._heap, (state.next_close, key))


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
