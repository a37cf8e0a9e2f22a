"""Event-time windows: their spec (`INSIGHTS_WINDOWS`: `tumbling:60s,hopping:300s/60s`) and
the maths on epoch-aligned panes.

Every window family (tumbling `size`, hopping `size/step`) is a union of panes of
`pane_ms = gcd(all sizes and steps)`. An event updates exactly one pane; a window's
aggregate is the merge of its panes. Times are epoch milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from streams.runtime.durations import parse_duration

__all__ = ["Window", "WindowPlan", "WindowSpec", "parse_windows"]


@dataclass(frozen=True, slots=True, order=True)  # windows of two families can tie
class WindowSpec:
    """An epoch-aligned event-time window family: every `[s, s+size)` with `s % step == 0`."""

    type: Literal["tumbling", "hopping"]
    size_s: int
    step_s: int
    # Stable short name, used in table keys: `tumbling:60s`, `hopping:300s/60s` (made
    # once: it is read per window closed).
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type == "tumbling":
            name = f"tumbling:{self.size_s}s"
        else:
            name = f"hopping:{self.size_s}s/{self.step_s}s"
        object.__setattr__(self, "name", name)  # frozen: set once, here


def _whole_seconds(text: str, spec: str) -> int:
    seconds = parse_duration(text)
    if seconds < 1 or seconds != int(seconds):
        msg = f"window {spec!r}: {text!r} must be a whole number of seconds, at least 1s"
        raise ValueError(msg)
    return int(seconds)


def parse_windows(text: str) -> tuple[WindowSpec, ...]:
    """`tumbling:60s,hopping:300s/60s` -> window specs (at least one, no duplicates)."""
    specs: list[WindowSpec] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        kind, sep, params = raw.partition(":")
        if not sep:
            msg = f"window {raw!r}: expected tumbling:SIZE or hopping:SIZE/STEP"
            raise ValueError(msg)
        if kind == "tumbling":
            size = _whole_seconds(params, raw)
            spec = WindowSpec("tumbling", size, size)
        elif kind == "hopping":
            size_text, slash, step_text = params.partition("/")
            if not slash:
                msg = f"window {raw!r}: hopping needs SIZE/STEP, e.g. hopping:300s/60s"
                raise ValueError(msg)
            size, step = _whole_seconds(size_text, raw), _whole_seconds(step_text, raw)
            if step >= size or size % step:
                msg = f"window {raw!r}: the step must be smaller than the size and divide it"
                raise ValueError(msg)
            spec = WindowSpec("hopping", size, step)
        else:
            msg = f"window {raw!r}: unknown type {kind!r} (tumbling or hopping)"
            raise ValueError(msg)
        if spec in specs:
            msg = f"window {raw!r} is given twice"
            raise ValueError(msg)
        specs.append(spec)
    if not specs:
        msg = "at least one window is required"
        raise ValueError(msg)
    return tuple(specs)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One window `[start_ms, end_ms)` of one family."""

    end_ms: int
    start_ms: int
    spec: WindowSpec

    @property
    def size_ms(self) -> int:
        return self.end_ms - self.start_ms


class WindowPlan:
    """The window families of a worker, their common pane size, and the grace period."""

    def __init__(self, specs: Sequence[WindowSpec], grace_ms: int) -> None:
        if not specs:
            msg = "at least one window spec is required"
            raise ValueError(msg)
        self.specs = tuple(specs)
        self.grace_ms = grace_ms
        self.pane_ms = math.gcd(*(v * 1000 for s in specs for v in (s.size_s, s.step_s)))
        self._families = tuple((s, s.size_s * 1000, s.step_s * 1000) for s in specs)

    def pane_of(self, t_ms: int) -> int:
        """Start of the pane holding time `t_ms`."""
        return t_ms - t_ms % self.pane_ms

    def windows_of(self, t_ms: int) -> Iterator[Window]:
        """Every window, of every family, that holds time `t_ms`."""
        for spec, size, step in self._families:
            for end in reversed(self._ends(t_ms, size, step)):  # latest start first
                yield Window(end, end - size, spec)

    def last_end(self, t_ms: int) -> int:
        """The latest end among the windows holding `t_ms`."""
        if len(self._families) == 1:  # the common case, per event: no generator
            _, size, step = self._families[0]
            return t_ms - t_ms % step + size
        return max(t_ms - t_ms % step + size for _, size, step in self._families)

    def is_late(self, t_ms: int, watermark_ms: int | None) -> bool:
        """True when every window holding `t_ms` has closed."""
        if watermark_ms is None or t_ms + self.grace_ms >= watermark_ms:
            return False  # every window ends after the times it holds (per event: cheap)
        return self.last_end(t_ms) + self.grace_ms <= watermark_ms

    def pane_expired(self, pane_ms: int, watermark_ms: int) -> bool:
        """True when every window holding this pane has closed (the pane can be dropped)."""
        return self.last_end(pane_ms) + self.grace_ms <= watermark_ms

    def _ends(self, t_ms: int, size: int, step: int) -> range:
        """The ends of a family's windows holding `t_ms`, ascending (no Window built:
        closing is computed per key and close, over every pane of the key)."""
        last = t_ms - t_ms % step + size
        return range(last - (size - 1 - t_ms % step) // step * step, last + 1, step)

    def windows_closing(
        self, panes: Iterable[int], after_ms: int | None, until_ms: int
    ) -> list[Window]:
        """Windows holding any of `panes` whose close time (end + grace) lies in
        `(after_ms, until_ms]`, in close order."""
        grace = self.grace_ms
        found: set[Window] = set()
        for pane in panes:
            for spec, size, step in self._families:
                for end in self._ends(pane, size, step):
                    close = end + grace
                    if (after_ms is None or close > after_ms) and close <= until_ms:
                        found.add(Window(end, end - size, spec))
        return sorted(found)

    def next_close(self, panes: Iterable[int], after_ms: int | None) -> int | None:
        """The earliest close time after `after_ms` of any window holding one of `panes`."""
        grace = self.grace_ms
        best: int | None = None
        for pane in panes:
            for _, size, step in self._families:
                ends = self._ends(pane, size, step)
                end = ends[0]
                if after_ms is not None and end + grace <= after_ms:  # the first end after
                    if ends[-1] + grace <= after_ms:
                        continue
                    end += ((after_ms - grace - end) // step + 1) * step
                close = end + grace
                if best is None or close < best:
                    best = close
        return best

    def panes_of(self, window: Window) -> range:
        """Pane starts covering `window`."""
        return range(window.start_ms, window.end_ms, self.pane_ms)
