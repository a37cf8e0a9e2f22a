"""`observer-insights validate FILE|-`: check observations against the input contract offline."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import click

from models import DecodeError, decode_observation
from models.deadletter import DeadLetterReason, FieldError
from streams.cli.commands.common import load_or_fail

__all__ = ["Checked", "check_items", "read_items", "validate"]

Format = Literal["auto", "lines", "array"]


@dataclass(frozen=True)
class Item:
    """One observation as a producer would send it: its bytes and where it starts."""

    line: int
    raw: bytes


@dataclass(frozen=True)
class Checked:
    """The verdict on one item: None reason means it is valid."""

    line: int
    reason: DeadLetterReason | None
    errors: tuple[FieldError, ...]
    event_id: str | None = None


def _lines(data: bytes) -> Iterator[Item]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if raw.strip():
            yield Item(number, raw)


def _array(text: str) -> Iterator[Item]:
    """The elements of a JSON array, each with the exact text it was written as."""
    decoder = json.JSONDecoder()
    index = _skip(text, 0)
    if text[index : index + 1] != "[":
        msg = "a JSON array must start with ["
        raise ValueError(msg)
    index = _skip(text, index + 1)
    if text[index : index + 1] == "]":
        return
    while True:
        try:
            _, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            msg = f"line {exc.lineno}: not valid JSON: {exc.msg}"
            raise ValueError(msg) from exc
        yield Item(text.count("\n", 0, index) + 1, text[index:end].encode())
        index = _skip(text, end)
        separator = text[index : index + 1]
        if separator == "]":
            if text[_skip(text, index + 1) :]:
                msg = f"line {text.count(chr(10), 0, index) + 1}: text after the closing ]"
                raise ValueError(msg)
            return
        if separator != ",":
            msg = f"line {text.count(chr(10), 0, index) + 1}: expected , or ] in the array"
            raise ValueError(msg)
        index = _skip(text, index + 1)


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def read_items(data: bytes, fmt: Format = "auto") -> list[Item]:
    """Observations from a file: one JSON object per line, or one JSON array.

    `auto` takes the file as an array when its first character is `[` and it holds nothing
    after the array's closing bracket; else as lines. Raises ValueError for a broken array.
    """
    if fmt == "lines":
        return list(_lines(data))
    text = data.decode("utf-8", errors="strict") if fmt == "array" else None
    if fmt == "auto":
        if not data.lstrip().startswith(b"["):
            return list(_lines(data))
        try:
            text = data.decode("utf-8")
            return list(_array(text))
        except (UnicodeDecodeError, ValueError):
            return list(_lines(data))
    assert text is not None
    return list(_array(text))


def check_items(items: list[Item], *, max_bytes: int) -> list[Checked]:
    """Judge each item exactly as the ingest agent does (`decode_observation`)."""
    results = []
    for item in items:
        try:
            observation = decode_observation(item.raw, max_bytes=max_bytes)
        except DecodeError as exc:
            results.append(Checked(item.line, exc.reason, exc.errors))
        else:
            results.append(Checked(item.line, None, (), observation.event_id))
    return results


def report_lines(results: list[Checked], source: str) -> tuple[list[str], bool]:
    """Error lines, duplicate notes and the summary; True when every item is valid."""
    lines: list[str] = []
    first_seen: dict[str, int] = {}
    duplicates = 0
    for result in results:
        if result.reason is not None:
            for error in result.errors:
                where = error.field or "(message)"
                lines.append(
                    f"{source}:{result.line}: {result.reason.value}: {where}: {error.message}"
                )
        elif result.event_id is not None:
            seen = first_seen.setdefault(result.event_id, result.line)
            if seen != result.line:
                duplicates += 1
                lines.append(
                    f"{source}:{result.line}: note: event_id {result.event_id!r} repeats line "
                    f"{seen} (a duplicate: counted once, not an error)"
                )
    reasons = Counter(r.reason.value for r in results if r.reason is not None)
    bad = sum(reasons.values())
    summary = f"{len(results)} observations: {len(results) - bad} valid, {bad} invalid"
    if reasons:
        summary += " (" + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) + ")"
    if duplicates:
        summary += f"; {duplicates} duplicate event_id"
    lines.append(summary)
    return lines, bad == 0


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "lines", "array"]),
    default="auto",
    show_default=True,
    help="One JSON object per line, or one JSON array.",
)
def validate(file: Path, fmt: Format) -> None:
    """Check observations in FILE (- for stdin) against the input contract.

    Uses the worker's own rules (INSIGHTS_MAX_MESSAGE_BYTES included): prints every problem as
    `FILE:LINE: REASON: FIELD: MESSAGE`, where REASON is the dead-letter reason the worker
    would give, then a summary. Exits 1 when any observation is invalid.
    """
    settings = load_or_fail()
    source = "-" if str(file) == "-" else str(file)
    try:
        data = sys.stdin.buffer.read() if source == "-" else file.read_bytes()
    except OSError as exc:
        raise click.FileError(source, hint=exc.strerror) from exc
    try:
        items = read_items(data, fmt)
    except (UnicodeDecodeError, ValueError) as exc:
        click.echo(f"{source}: undecodable: (file): {exc}", err=True)
        raise SystemExit(1) from exc
    lines, ok = report_lines(check_items(items, max_bytes=settings.max_message_bytes), source)
    for line in lines:
        click.echo(line)
    raise SystemExit(0 if ok else 1)
