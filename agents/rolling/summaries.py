"""The figures of a key's windows, merged from its panes. Pure."""

from __future__ import annotations

from agents.rolling.aggregate import OneValue, Pane, PaneAggregate, Summary
from streams.runtime.windows import Window

__all__ = ["aggregate_of", "window_summaries"]


def window_summaries(
    panes: dict[int, Pane],
    windows: list[Window],
    pane_ms: int,
    aggregates: type[PaneAggregate],
    *,
    per_observer: bool = False,
) -> list[tuple[Window, Summary]]:
    """The summaries of `windows` over a key's `panes` (in the windows' order; windows
    without a pane are left out), merging each pane once per chain rather than once per
    window. `per_observer`: the per-observer figures too (finals: consensus reads them).

    The windows of a family that hold a key's newest pane are nested: taken from the
    latest start back, each holds the panes of the one before plus older ones. So one
    aggregate is grown along them, and a window whose panes do not end with the
    previous window's starts a new chain. (Merge order differs from a window merged
    alone: `stddev` may differ from its final in the last bits; the other figures are
    exact either way.) Families are compared by identity: every window of one plan is
    made from its specs.
    """
    found: list[Summary | None] = [None] * len(windows)
    chain: PaneAggregate | None = None  # holds the panes `held`; never a live pane
    held: list[int] = []
    family = None
    for i in sorted(
        range(len(windows)), key=lambda i: (windows[i].spec.name, -windows[i].start_ms)
    ):
        window = windows[i]
        parts = [p for p in range(window.start_ms, window.end_ms, pane_ms) if p in panes]
        if not parts:
            continue
        n = len(held)
        if window.spec is family and 0 < n < len(parts) and parts[-n:] == held:
            if chain is None:  # a lone pane so far: begin from a copy of it
                chain = aggregates.merged([panes[held[0]]])
            for p in reversed(parts[:-n]):
                chain.absorb(panes[p])
            found[i] = chain.finish(per_observer)
        elif len(parts) == 1:
            chain = None
            found[i] = aggregate_of([panes[parts[0]]], aggregates).finish(per_observer)
        else:
            chain = aggregates.merged([panes[p] for p in parts])
            found[i] = chain.finish(per_observer)
        family, held = window.spec, parts
    return [(w, summary) for w, summary in zip(windows, found, strict=True) if summary is not None]


def aggregate_of(parts: list[Pane], aggregates: type[PaneAggregate]) -> PaneAggregate:
    """The aggregate of `parts`: the part itself when it is the only one (and not kept as
    its one value), else a new one of the `aggregates` kind merged from them."""
    if len(parts) == 1:
        part = parts[0]
        if not isinstance(part, OneValue):
            return part
    return aggregates.merged(parts)
