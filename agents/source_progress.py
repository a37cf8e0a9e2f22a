"""The ingest side of event time: each input partition's watermark, whether it is idle, and
which keyed partitions have not heard of its progress yet. Pure: the ingest agent feeds it."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.keyed import SourceReport

__all__ = ["FetchState", "SourceProgress"]

# A fetch answer older than this means the consumer is not talking to the broker (an
# outage, a pause): the partition is not known to be caught up, so it is not idle.
FETCH_FRESH_MS = 5_000


@dataclass(frozen=True, slots=True)
class FetchState:
    """The consumer's view of an input partition (`streams.faust.consumer_state.fetch_state`):
    fetch position, log end and when a fetch answer last reported them (wall ms); the offset
    after the last record handed to the agent, and whether the partition takes input now
    (assigned, not paused, no rebalance or recovery under way)."""

    position: int | None
    end: int | None
    polled_ms: int | None
    fetched: int | None
    active: bool


@dataclass(slots=True)
class _Source:
    watermark_ms: int | None = None
    last_input_s: float = 0.0  # monotonic time of the last message read (or assignment)
    read_to: int | None = None  # offset after the last message processed
    told: dict[int, int | None] = field(default_factory=dict)  # destination -> watermark


class SourceProgress:
    """Per input partition of this worker: its watermark (greatest valid `observed_at`
    read), when it last had input, and what each keyed partition was last told."""

    def __init__(self, sources: int, idle_timeout_s: float) -> None:
        self.sources = sources
        self.idle_timeout_s = idle_timeout_s
        self._by_source: dict[int, _Source] = {}

    def _source(self, source: int, now_s: float) -> _Source:
        state = self._by_source.get(source)
        if state is None:
            state = self._by_source[source] = _Source(last_input_s=now_s)
        return state

    def read(self, source: int, watermark_ms: int | None, read_to: int, now_s: float) -> None:
        """A batch of `source` was processed (its records handed to their keyed partitions):
        the greatest valid `observed_at` in it, the offset after its last message."""
        state = self._source(source, now_s)
        state.last_input_s = now_s
        state.read_to = read_to
        if watermark_ms is not None and (
            state.watermark_ms is None or watermark_ms > state.watermark_ms
        ):
            state.watermark_ms = watermark_ms

    def report(self, source: int, destination: int, now_s: float) -> SourceReport:
        """The report that goes with records from `source` to `destination` (not idle: it
        just had input); remembered as told."""
        state = self._source(source, now_s)
        state.told[destination] = state.watermark_ms
        return SourceReport(source, state.watermark_ms, self.sources)

    def idle(self, source: int, fetch: FetchState, now_s: float, now_ms: int) -> bool:
        """Caught up (every fetched record processed, the position at the log end, by a
        fresh fetch answer) and without input for the idle timeout."""
        state = self._source(source, now_s)
        if not fetch.active or now_s - state.last_input_s < self.idle_timeout_s:
            return False
        if fetch.position is None or fetch.end is None or fetch.polled_ms is None:
            return False
        if now_ms - fetch.polled_ms > FETCH_FRESH_MS or fetch.position < fetch.end:
            return False
        return fetch.fetched is None or (
            state.read_to is not None and state.read_to >= fetch.fetched
        )

    def due(
        self, source: int, fetch: FetchState, destinations: int, now_s: float, now_ms: int
    ) -> list[tuple[int, SourceReport]]:
        """The control reports `source` owes its keyed partitions now: to every one while it
        is idle (repeated: an idle report counts for a lease), else to those not told its
        latest watermark yet. None while it does not take input (paused, rebalancing)."""
        if not fetch.active:
            return []
        state = self._source(source, now_s)
        if self.idle(source, fetch, now_s, now_ms):
            report = SourceReport(source, state.watermark_ms, self.sources, now_ms)
            for destination in range(destinations):
                state.told[destination] = state.watermark_ms
            return [(destination, report) for destination in range(destinations)]
        mark = state.watermark_ms
        if mark is None:
            return []
        due = [d for d in range(destinations) if state.told.get(d, -1) != mark]
        report = SourceReport(source, mark, self.sources)
        for destination in due:
            state.told[destination] = mark
        return [(destination, report) for destination in due]

    def untell(self, source: int, destination: int) -> None:
        """A report to `destination` did not arrive (refused): it is due again."""
        state = self._by_source.get(source)
        if state is not None:
            state.told.pop(destination, None)

    def forget(self, sources: set[int]) -> None:
        """Revoked partitions: their next owner rebuilds their progress from its input."""
        for source in sources:
            self._by_source.pop(source, None)
