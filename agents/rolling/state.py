"""The rolling state of one partition: its event-time clock (`clock`), dedup memory
(`dedup`), the panes of every (scope, entity, metric) (`panes`), the latest finals
(`latest_finals`) and the anomaly baselines, persisted through the changelog codec
(`changelog`). Pure: the Faust agent feeds it observations and persists what it reports
as changed, so the logic is tested without a broker."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import Enum

from agents.anomaly import AnomalyConfig, BaselineState, Detection
from agents.rolling import changelog
from agents.rolling.aggregate import AGGREGATE_KINDS, PaneAggregate
from agents.rolling.changelog import (
    BaselineRecord,
    ClockRecord,
    JournalRecord,
    Kind,
    LatestFinalRecord,
    PanesRecord,
)
from agents.rolling.clock import SourceClock, SourceReport
from agents.rolling.dedup import Dedup
from agents.rolling.latest_finals import LatestFinals, LatestKey
from agents.rolling.panes import Emission, Panes, StateKey
from models.keyed import KeyedObservation
from streams.runtime.windows import WindowPlan

__all__ = ["Emission", "Outcome", "PartitionState", "StateKey"]

# Latest finals and anomaly baselines past their retention are swept out at most once per
# LATEST_SWEEP_MS of event time (so within the hour after).
LATEST_SWEEP_MS = 3600 * 1000


class Outcome(Enum):
    """What became of one offered observation."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    LATE = "late"
    OVER_CAPACITY = "over_capacity"  # a new key beyond the partition's key budget


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
        """`dedup_ttl_ms`: how long an event id is remembered (0: no dedup);
        `idle_lease_ms`: how long a source's idle report counts (`SourceClock`);
        `closing_changes`: a window closing with updates not yet taken as changes also
        yields them as a last change (`take_closing_changes`), so the last change of a
        window carries its final figures; `max_keys`: the key budget (a new key beyond it
        is `OVER_CAPACITY`); `dedup_max_ids`: ids remembered at most (the oldest go first,
        before their TTL: `dedup_evicted` counts them)."""
        self.plan = plan
        self.aggregates = aggregates
        self.dedup_ttl_ms = dedup_ttl_ms
        self.max_keys = max_keys
        self.dedup_max_ids = dedup_max_ids
        # (stage, key, exception) of windows that could not be summarised or persisted:
        # that key's work is skipped, the partition goes on (`take_failures`).
        self._failures: list[tuple[str, StateKey, Exception]] = []
        self.clock = SourceClock(idle_lease_ms)
        self.panes = Panes(plan, aggregates, self._failures, closing_changes=closing_changes)
        self.dedup = Dedup(dedup_ttl_ms, dedup_max_ids) if dedup_ttl_ms else None
        self.latest = LatestFinals()
        self.baselines = BaselineState(anomaly) if anomaly is not None else None
        self._anomalies: list[Detection] = []
        self._watermark_changed = False
        self._next_sweep: int | None = None  # watermark of the next retention sweep
        self._parts: dict[StateKey, int] = {}  # keys last written in more than one record
        self._dropped: list[str] = []  # restored keys no setting uses any more

    @property
    def watermark(self) -> int | None:
        """The event time windows are closed up to (the clock's, once restored)."""
        return self.panes.watermark

    @property
    def dedup_evicted(self) -> int:
        """Ids forgotten before their TTL (over `dedup_max_ids`), since the start."""
        return self.dedup.evicted if self.dedup is not None else 0

    # -- processing -------------------------------------------------------------------

    def offer(self, obs: KeyedObservation, received_ms: int) -> Outcome:
        """Count one observation unless it is a duplicate or late; closes windows that the
        advancing watermark passes (their finals wait in `take_finals`)."""
        t = obs.observed_ms
        panes, plan = self.panes, self.plan
        watermark = panes.watermark
        # (is_late's own first test inlined: a time within grace of the watermark is never
        # late, so in-order input makes no call per event)
        late = (
            watermark is not None and t + plan.grace_ms < watermark and plan.is_late(t, watermark)
        )
        key = (obs.scope, obs.entity, obs.metric)
        state = panes.keys.get(key)
        dedup = self.dedup
        if dedup is not None:
            if received_ms != dedup.expired_at:  # a batch shares one receive time
                dedup.expire(received_ms)
            dedup_key = obs.scope[0] + obs.event_id
            if dedup_key in dedup.seen:
                return Outcome.DUPLICATE
            if late:
                return Outcome.LATE
            if state is None and self.max_keys is not None and len(panes.keys) >= self.max_keys:
                return Outcome.OVER_CAPACITY
            dedup.remember(dedup_key, received_ms)
        elif late:
            return Outcome.LATE
        elif state is None and self.max_keys is not None and len(panes.keys) >= self.max_keys:
            return Outcome.OVER_CAPACITY
        panes.add(key, state, obs)
        if self.baselines is not None and obs.scope == "subject":
            detection = self.baselines.offer(obs)
            if detection is not None:
                self._anomalies.append(detection)
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
        watermark = self.panes.watermark
        if watermark is not None and watermark_ms <= watermark:
            return
        self._watermark_changed = True
        self.panes.close(watermark_ms)

    # -- what to publish --------------------------------------------------------------

    def take_finals(self) -> list[Emission]:
        """Finals of the windows closed since the last call, in close order."""
        return self.panes.take_finals()

    def take_closing_changes(self) -> list[Emission]:
        """With `closing_changes`: the last changes of windows closed since the last call
        that had updates no change carried yet (their figures are the finals')."""
        return self.panes.take_closing_changes()

    def take_changes(self) -> Iterator[Emission]:
        """Current figures of every open window touched since the last call, made one key
        at a time as they are consumed. Consume it whole, with no other call on this
        state in between."""
        return self.panes.take_changes()

    def failed(self, stage: str, key: StateKey, exc: Exception) -> None:
        """Keep a failure found outside the state (a record that could not be rendered)."""
        self._failures.append((stage, key, exc))

    def take_failures(self) -> list[tuple[str, StateKey, Exception]]:
        """Windows whose figures could not be made, rendered or written since the last call:
        (stage `close`, `changes`, `render` or `persist`, key, exception)."""
        failures = self._failures[:]
        self._failures.clear()  # (the list is shared with the panes)
        return failures

    def take_anomalies(self) -> list[Detection]:
        """Anomalies found since the last call, in arrival order."""
        anomalies, self._anomalies = self._anomalies, []
        return anomalies

    # -- queries -----------------------------------------------------------------------

    def current(self, scope: str, entity: str, metric: str | None = None) -> list[Emission]:
        """Figures of every open window of an entity (all metrics, or one)."""
        return self.panes.current(scope, entity, metric)

    def record_final(self, key: StateKey, family: str, end_ms: int, record: bytes) -> None:
        """Remember the newest final record of a window family, for queries."""
        self.latest.record((*key, family), end_ms, record)

    def latest_finals(self, scope: str, entity: str, metric: str | None = None) -> list[bytes]:
        """The newest final record of each (metric, window family) of an entity."""
        return self.latest.query(scope, entity, metric)

    @property
    def key_count(self) -> int:
        """Live (scope, entity, metric) keys."""
        return len(self.panes.keys)

    @property
    def pane_count(self) -> int:
        """Live panes over all keys."""
        return self.panes.pane_count

    # -- persistence (the changelog) -----------------------------------------------------

    def take_persist(self, chunk_id: str) -> tuple[dict[str, bytes | None], int]:
        """What changed since the last call, as logical key -> value (None deletes).

        `chunk_id` names the dedup journal chunks written now (unique within the partition).
        Returns the writes and how many keys they cover.
        """
        writes: dict[str, bytes | None] = {}
        self._persist_panes(writes)
        if self._watermark_changed:
            writes[changelog.key_name(Kind.CLOCK)] = changelog.encode_clock(self.clock.snapshot())
            self._watermark_changed = False
        if self.dedup is not None:
            for name, chunk in self.dedup.snapshot(chunk_id).items():
                value = None if chunk is None else changelog.encode_journal(chunk)
                writes[changelog.key_name(Kind.JOURNAL, name)] = value
        self._sweep()
        if self.baselines is not None:
            for (subject, metric), fields in self.baselines.snapshot().items():
                value = None if fields is None else changelog.encode_baseline(fields)
                writes[changelog.key_name(Kind.BASELINE, subject, metric)] = value
        for name in self._dropped:
            writes[name] = None
        self._dropped.clear()
        for latest_key, latest in self.latest.snapshot().items():
            value = None if latest is None else changelog.encode_latest_final(latest)
            writes[changelog.key_name(Kind.LATEST_FINAL, *latest_key)] = value
        return writes, len(writes)

    def _persist_panes(self, writes: dict[str, bytes | None]) -> None:
        """The changed keys' panes, in as many records as each needs, and deletions of the
        records no longer used (a key gone, or written in fewer parts than before)."""
        for key, record in self.panes.snapshot().items():
            before = self._parts.get(key, 1)
            if record is None:
                parts: list[bytes] = []
            else:
                try:
                    parts = changelog.encode_panes(record, self.aggregates)
                except Exception as exc:  # not persisted: the last state written stays
                    self._failures.append(("persist", key, exc))
                    continue
            for i, part in enumerate(parts):
                writes[_panes_key(key, i)] = part
            for i in range(len(parts), before):
                writes[_panes_key(key, i)] = None
            if len(parts) > 1:
                self._parts[key] = len(parts)
            else:
                self._parts.pop(key, None)

    def _sweep(self) -> None:
        """Forget the latest finals and baselines past their retention, once per
        `LATEST_SWEEP_MS` of event time."""
        watermark = self.panes.watermark
        if watermark is None or (self._next_sweep is not None and watermark < self._next_sweep):
            return
        self._next_sweep = watermark + LATEST_SWEEP_MS
        if self.baselines is not None:
            self.baselines.expire(watermark)
        self.latest.expire(watermark)

    def restore(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild from persisted logical key -> value pairs (after recovery), each value
        in any format ever written (`changelog`)."""
        aggregates = self.aggregates
        panes: list[tuple[StateKey, PanesRecord]] = []
        chunks: list[tuple[str, JournalRecord]] = []
        latest: list[tuple[LatestKey, LatestFinalRecord]] = []
        baselines: list[tuple[tuple[str, str], BaselineRecord]] = []
        # A subject's or metric's name appears in several keys (state, baseline, latest
        # final): one string each, not one per key parsed (~250 B per state key restored).
        names: dict[str, str] = {}
        for name, raw in items:
            kind, parts = changelog.parse_key(name, names)
            if kind is None:
                continue
            if kind is Kind.JOURNAL and self.dedup is None:
                self._dropped.append(name)  # dedup turned off since: the journal goes
                continue
            if kind is Kind.BASELINE and self.baselines is None:
                self._dropped.append(name)  # anomaly detection turned off since
                continue
            record = changelog.decode(kind, raw, aggregates)
            if isinstance(record, PanesRecord):
                key: StateKey = (parts[1], parts[2], parts[3])
                panes.append((key, record))
                if len(parts) > 4:  # a part after the first
                    self._parts[key] = max(self._parts.get(key, 1), int(parts[4]) + 1)
            elif isinstance(record, ClockRecord):
                self.clock.restore(record)
            elif isinstance(record, JournalRecord):
                chunks.append((parts[1], record))
            elif isinstance(record, LatestFinalRecord):
                latest.append(((parts[1], parts[2], parts[3], parts[4]), record))
            else:
                baselines.append(((parts[1], parts[2]), record))
        self.panes.restore(panes)
        self.latest.restore(latest)
        if self.dedup is not None:
            self.dedup.restore(chunks)
        if self.baselines is not None:
            self.baselines.restore(baselines)
        # Windows the restored watermark already passed close now (e.g. state written
        # before their final was sent).
        if self.clock.watermark_ms is not None:
            self.panes.close(self.clock.watermark_ms)


def _panes_key(key: StateKey, part: int) -> str:
    """The logical key of a key's panes: the first (or only) record, then its parts."""
    return changelog.key_name(Kind.PANES, *key, *((part,) if part else ()))
