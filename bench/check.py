"""A candidate's output against the ground truth (bench/truth.py).

Finals: every certainly-closed window has one, every final equals the truth, no window has
two finals with different figures. Changes (per-update records): for every expected window,
the last update (by offset, within its partition) equals the truth over all input. count,
min and max exact; sum and mean to 1e-9 relative (the order of additions may differ).
A candidate measured on part of the input (`partial`) is held to prefixes instead: each
window's last update is the aggregate of the first `count` values of that window in send
order (a key's records are in one input partition, read in order), and no window need be
complete or present.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.outputs import DeadLetter, Row, emits, parse, parse_dead_letter, read_output
from bench.roster import RunSpec
from bench.truth import Agg, Truth, WindowKey

__all__ = ["MAX_DESCRIBED", "account_dead_letters", "check", "describe_window", "verify"]

DECODE_REASONS = frozenset({"invalid", "undecodable", "unsupported_version"})

MAX_DESCRIBED = 10
REL_TOL = 1e-9


def describe_window(wk: WindowKey) -> str:
    scope, key, metric, start, size = wk
    at = datetime.fromtimestamp(start / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{scope} {key} {metric} window [{at}Z +{size // 1000}s)"


def _figures(count: int, total: float, low: float, high: float) -> str:
    return f"count={count} sum={total!r} min={low!r} max={high!r}"


def _differs(row: Row, agg: Agg) -> list[str]:
    """The figures of `row` that are not `agg`'s."""
    bad = []
    if row.count != agg.count:
        bad.append("count")
    if not math.isclose(row.sum, agg.sum, rel_tol=REL_TOL, abs_tol=1e-12):
        bad.append("sum")
    if row.min != agg.min:
        bad.append("min")
    if row.max != agg.max:
        bad.append("max")
    if (
        row.mean is not None
        and agg.count
        and not math.isclose(row.mean, agg.mean, rel_tol=REL_TOL, abs_tol=1e-12)
    ):
        bad.append("mean")
    return bad


class _Findings:
    def __init__(self, candidate: str) -> None:
        self.candidate = candidate
        self.count = 0
        self.kinds: dict[str, int] = defaultdict(int)
        self.described: list[str] = []

    def add(self, text: str, kind: str) -> None:
        self.count += 1
        self.kinds[kind] += 1
        if len(self.described) < MAX_DESCRIBED:
            self.described.append(f"{self.candidate}: {text}")

    def compare(self, what: str, row: Row, agg: Agg | None) -> None:
        wk = row.window
        got = _figures(row.count, row.sum, row.min, row.max)
        if row.mean is not None:
            got += f" mean={row.mean!r}"
        if agg is None:
            self.add(
                f"{what} {describe_window(wk)}: expected no window (no input), got {got}",
                f"{what} without input",
            )
            return
        bad = _differs(row, agg)
        if bad:
            want = _figures(agg.count, agg.sum, agg.min, agg.max)
            self.add(
                f"{what} {describe_window(wk)}: {'/'.join(bad)} differ: expected {want}, got {got}",
                f"{what} differs",
            )


def check(
    candidate: str,
    truth: Truth,
    rows: list[Row],
    *,
    finals: bool,
    changes: bool,
    partial: bool = False,
    output_records: int = 0,
    output_bytes: int = 0,
    input_events: int | None = None,
) -> dict[str, Any]:
    """The check result (`mismatches` empty: it passed). `finals`/`changes`: what the
    candidate emits, so what it must have emitted."""
    found = _Findings(candidate)
    final_rows: dict[WindowKey, list[Row]] = defaultdict(list)
    last_change: dict[WindowKey, Row] = {}
    partitions: dict[WindowKey, set[int]] = defaultdict(set)
    for row in rows:
        wk = row.window
        if row.final:
            final_rows[wk].append(row)
        else:
            partitions[wk].add(row.order[0])
            held = last_change.get(wk)
            if held is None or row.order > held.order:
                last_change[wk] = row
    if not finals and final_rows:
        found.add(
            f"{sum(map(len, final_rows.values()))} final records from a changes-only run",
            "unexpected finals",
        )
    if not changes and last_change:
        found.add(
            f"{len(last_change)} windows with change records from a finals-only run",
            "unexpected changes",
        )

    finals_checked = 0
    for wk, emitted in final_rows.items():
        expected = truth.aggregates.get(wk)
        for row in emitted:
            finals_checked += 1
            want = expected
            if partial and expected is not None:
                want = _prefix(truth, wk, row.count) or expected
            found.compare("final", row, want)
        figures = {(r.count, r.sum, r.min, r.max) for r in emitted}
        if len(figures) > 1:
            found.add(
                f"{len(emitted)} finals with different figures for {describe_window(wk)}",
                "finals differ",
            )
    if finals and not partial:
        missing = sorted(truth.closed - final_rows.keys())
        for wk in missing:
            want = truth.aggregates[wk]
            found.add(
                f"no final for the closed {describe_window(wk)}: expected {want}", "missing final"
            )

    changes_checked = 0
    if changes:
        for wk, row in last_change.items():
            if wk in truth.aggregates or partial:
                continue
            found.compare("last change", row, None)
        for wk, agg in truth.aggregates.items():
            row = last_change.get(wk)
            if row is None:
                if not partial:
                    found.add(
                        f"no change for {describe_window(wk)}: expected {agg}", "missing change"
                    )
                continue
            changes_checked += 1
            expected = _prefix(truth, wk, row.count) if partial else agg
            if expected is None:
                found.add(
                    f"last change {describe_window(wk)}: count {row.count} is more than the "
                    f"{agg.count} values of the window",
                    "last change differs",
                )
                continue
            found.compare("last change", row, expected)
    spread = sum(1 for parts in partitions.values() if len(parts) > 1)
    events = input_events if input_events is not None else truth.input_events
    return {
        "finals_checked": finals_checked,
        "changes_checked": changes_checked,
        "windows_expected": len(truth.aggregates),
        "windows_closed": len(truth.closed),
        "input_events": events,
        "partial": partial,
        "mismatch_count": found.count,
        "mismatch_kinds": dict(found.kinds),
        "mismatches": found.described,
        "windows_over_partitions": spread,
        "output_records": output_records,
        "output_bytes": output_bytes,
        "records_per_event": output_records / events if events else None,
        "bytes_per_event": output_bytes / events if events else None,
    }


def _prefix(truth: Truth, wk: WindowKey, count: int) -> Agg | None:
    """The aggregate of the first `count` values of window `wk` (None: it has fewer)."""
    assert truth.sequences is not None, "a partial check needs the truth's sequences"
    values = truth.sequences.get(wk, [])
    if count > len(values):
        return None
    return Agg.of(values[:count])


def account_dead_letters(
    truth: Truth, letters: list[DeadLetter]
) -> tuple[set[tuple[str, str]], list[str], dict[str, int]]:
    """Our worker's dead letters against the input: one `invalid` (or `undecodable`,
    `unsupported_version`) per invalid record, `late` ones only for late events, once per
    scope, and no other reason. Returns the (scope, event_id) pairs refused as late (the
    truth counts the other late ones: `Truth.counting_late`), the problems, and the count
    per reason."""
    late = truth.late_pairs()
    refused: set[tuple[str, str]] = set()
    problems: list[str] = []
    reasons: dict[str, int] = defaultdict(int)
    for letter in letters:
        reasons[letter.reason] += 1
        if letter.reason == "late":
            pair = (letter.scope or "?", letter.event_id or "?")
            if pair not in late:
                problems.append(f"late dead letter for {pair}, not a late event of the input")
            elif pair in refused:
                problems.append(f"two late dead letters for {pair}")
            refused.add(pair)
        elif letter.reason not in DECODE_REASONS:
            problems.append(
                f"dead letter {letter.reason} for event {letter.event_id} at {letter.order}"
            )
    decoded = sum(reasons.get(r, 0) for r in DECODE_REASONS)
    if decoded != truth.invalid:
        problems.append(f"{decoded} invalid dead letters for the {truth.invalid} invalid records")
    return refused & late, problems, dict(reasons)


def verify(spec: RunSpec, truth: Truth, progress: Callable[[], int]) -> dict[str, Any]:
    """Read the candidate's output topic, parse it and check it against `truth`. The
    candidate may still be running: `progress` (its progress count), asked once the output
    is read, says whether it has processed all the input (else it is held to prefixes) and
    how many input records the output stands for. For our worker its dead letters are
    accounted for too, and the late events it did not refuse are held counted."""
    candidate = spec.candidate
    records, complete = read_output(spec.bootstrap, spec.output_topic)
    problems = []
    extra: dict[str, Any] = {}
    if candidate.kind == "insights":
        letters, letters_complete = read_output(spec.bootstrap, f"{spec.run_id}.deadletter")
        if not letters_complete:
            problems.append(f"{candidate.name}: dead letters not read to their end in time")
        try:
            refused, dead_problems, reasons = account_dead_letters(
                truth, [parse_dead_letter(r) for r in letters]
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            refused, dead_problems, reasons = set(), [f"dead letters not understood: {exc!r}"], {}
        problems.extend(f"{candidate.name}: {p}" for p in dead_problems)
        late = truth.late_pairs()
        truth = truth.counting_late(refused)
        extra = {
            "dead_letters": reasons,
            "late_refused": len(refused),
            "late_counted": len(late) - len(refused),
        }
    processed = progress()
    rows: list[Row] = []
    unparsable: list[str] = []
    for record in records:
        try:
            rows.extend(parse(candidate, record))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            unparsable.append(f"offset {record.partition}/{record.offset}: {exc!r}")
    finals, changes = emits(candidate)
    result = check(
        candidate.name,
        truth,
        rows,
        finals=finals,
        changes=changes,
        partial=processed < truth.progress_total(candidate),
        output_records=len(records),
        output_bytes=sum(r.size for r in records),
        input_events=truth.input_records(candidate, processed),
    )
    result.update(extra)
    if not complete:
        problems.append(f"{candidate.name}: {spec.output_topic} not read to its end in time")
    if unparsable:
        problems.append(
            f"{candidate.name}: {len(unparsable)} output records not understood, first: "
            f"{unparsable[0]}"
        )
    result["mismatch_count"] += len(problems)
    if problems:
        result["mismatch_kinds"]["output or dead letters"] = len(problems)
    result["mismatches"] = (problems + result["mismatches"])[:MAX_DESCRIBED]
    return result
