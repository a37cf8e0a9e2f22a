"""Parsing of the duration and window-spec strings used in settings (`30s`, `hopping:300s/60s`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["WindowSpec", "parse_duration", "parse_windows"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`500ms`, `30s`, `5m`, `1h`, `1d`, or a bare number of seconds -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"{text!r} is not a duration (examples: 500ms, 30s, 5m, 1h)"
        raise ValueError(msg)
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]


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
