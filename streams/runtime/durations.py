"""Parsing of the duration strings used in settings (`500ms`, `30s`, `5m`)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_duration"]

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
