"""The rolling state's changelog: the logical key and the value of every record type.

A key is a JSON array whose first item names the record type (`Kind`), the rest its
identity. A value is a JSON array `[tag, *fields]`: the tag `"<type>/<version>"` names the
record type and the version of its fields, which follow in the order of its record class.
Versioning rule: a record type's version goes up whenever its fields change (added,
removed, reordered or meaning something else); decoding keeps every earlier version, and
the values written before tags existed (their first item is never a string: `_legacy`);
writing always uses the newest. Values stay positional (no field names inside):
the changelog is re-read on every recovery and its bytes are kept in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final, NamedTuple

import orjson

from agents.rolling.aggregate import Aggregate, BasicAggregate, OneValue, Pane, PaneAggregate
from models.codec import right_sized

__all__ = [
    "RECORD_MAX_BYTES",
    "BaselineRecord",
    "ClockRecord",
    "JournalRecord",
    "Kind",
    "LatestFinalRecord",
    "PanesRecord",
    "decode",
    "encode_baseline",
    "encode_clock",
    "encode_journal",
    "encode_latest_final",
    "encode_panes",
    "key_name",
    "parse_key",
]

# The largest changelog value written: below the 1 MiB (1,048,588 B) a topic accepts by
# default. A key whose panes take more is written in parts (`encode_panes`); one pane is
# bounded by construction (observers kept, sketch bins, ids' lengths).
RECORD_MAX_BYTES = 1_000_000


class Kind(StrEnum):
    """A record's type: the first item of its key. One letter each, as they always were:
    they are part of every key of a compacted topic, and a renamed one would leave the
    records under the old name undeleted."""

    PANES = "a"  # ["a", scope, entity, metric(, part)]: a key's panes
    CLOCK = "w"  # ["w"]: the event-time clock
    JOURNAL = "d"  # ["d", chunk]: ids remembered by dedup
    LATEST_FINAL = "f"  # ["f", scope, entity, metric, window family]
    BASELINE = "b"  # ["b", subject, metric]: an anomaly baseline


class PanesRecord(NamedTuple):
    """panes/1: `[closed_until, {form: [[pane start ms, *fields], ...]}]`, by the form a
    pane is written in: `one` (value, observed ms, event id, observer), `basic`
    (`BasicAggregate.to_state`), `full` (`Aggregate.to_state`). A key written in parts:
    each part a record, `closed_until` in the first only (None in the others)."""

    closed_until: int | None  # the watermark the key's windows were closed up to
    panes: dict[int, Pane]  # pane start ms -> pane


class ClockRecord(NamedTuple):
    """clock/3 (1: a bare watermark, 2: an object): `[watermark, sources, [[source,
    mark], ...]]`. Idle reports are not kept: after a restore every source reports anew."""

    watermark_ms: int | None
    sources: int  # input partitions 0 .. sources-1 feed the partition
    marks: dict[int, int]  # source -> its watermark (sources that sent one)


class JournalRecord(NamedTuple):
    """journal/1: `[[ids...], [[received ms, how many], ...]]`: the receive times as runs
    of equal ones (a batch shares one), in the ids' order."""

    ids: list[str]  # dedup keys (scope initial + event id), in arrival order
    received_ms: list[int]  # each id's receive time


class LatestFinalRecord(NamedTuple):
    """final/1: `[end ms, record]`, the record embedded as the JSON it is."""

    end_ms: int
    record: bytes  # the final's `insights.rolling` record


class BaselineRecord(NamedTuple):
    """baseline/1: the fields in order (`BaselineState`'s list)."""

    values: int  # folded in so far
    mean: float
    var: float
    anomaly_ms: int | None  # observed time of the last anomaly reported
    severity_rank: int  # of that anomaly: 1 warning, 2 critical
    seen_ms: int | None  # newest observed time (None: restored from before it was kept)


Record = PanesRecord | ClockRecord | JournalRecord | LatestFinalRecord | BaselineRecord

_PANES: Final = "panes/1"
_CLOCK: Final = "clock/3"
_JOURNAL: Final = "journal/1"
_LATEST_FINAL: Final = "final/1"
_BASELINE: Final = "baseline/1"
_BASIC_FIELDS: Final = 6
_FULL_FIELDS: Final = (10, 11)  # the observer overflow last, only past the bound
_BASELINE_FIELDS_BEFORE_SEEN: Final = 5  # written before 2026-12-07


# -- keys --------------------------------------------------------------------------------


def key_name(kind: Kind, *identity: str | int) -> str:
    """The logical key of a record (the table key is `<partition>|<logical key>`)."""
    return orjson.dumps((kind.value, *identity)).decode()


def parse_key(name: str, names: dict[str, str]) -> tuple[Kind | None, list[Any]]:
    """A logical key's type (None: not one this code writes) and its items; every string
    item as the one equal string in `names` (a name shared by many keys is held once)."""
    items = [names.setdefault(i, i) if type(i) is str else i for i in orjson.loads(name)]
    try:
        return Kind(items[0]), items
    except ValueError:
        return None, items


# -- encoding ----------------------------------------------------------------------------


def encode_panes(record: PanesRecord, aggregates: type[PaneAggregate]) -> list[bytes]:
    """A key's panes as one value, or in parts of whole panes when larger than
    `RECORD_MAX_BYTES` (each below it: one pane is). A pane of one value is written as that
    value under a kind that keeps ids and observers, else as the aggregate it stands for."""
    keeps_ids = issubclass(aggregates, Aggregate)
    forms: dict[str, list[list[Any]]] = {}
    for start, pane in record.panes.items():
        form, entry = _pane_entry(start, pane, keeps_ids)
        forms.setdefault(form, []).append(entry)
    raw = orjson.dumps((_PANES, record.closed_until, forms))
    if len(raw) <= RECORD_MAX_BYTES:
        return [right_sized(raw)]
    parts: list[bytes] = []
    group: dict[str, list[bytes]] = {}
    size = 0
    for form, entries in forms.items():
        for entry in entries:
            one = orjson.dumps(entry)
            if size and size + len(one) + 128 > RECORD_MAX_BYTES:  # 128: tag, forms
                parts.append(_panes_part(record.closed_until if not parts else None, group))
                group, size = {}, 0
            group.setdefault(form, []).append(one)
            size += len(one) + 1
    parts.append(_panes_part(record.closed_until if not parts else None, group))
    return parts


def _pane_entry(start: int, pane: Pane, keeps_ids: bool) -> tuple[str, list[Any]]:
    """(form, [start, *fields]) of a pane."""
    if isinstance(pane, OneValue):
        if keeps_ids:
            return "one", [start, pane.value, pane.observed_ms, pane.event_id, pane.observer]
        return "basic", [start, *BasicAggregate.merged((pane,)).to_state()]
    if isinstance(pane, Aggregate) and not pane.basic_only:
        return "full", [start, *pane.to_state()]
    return "basic", [start, *pane.to_state()]


def _panes_part(closed_until: int | None, forms: dict[str, list[bytes]]) -> bytes:
    head = orjson.dumps((_PANES, closed_until))[:-1]  # without its closing bracket
    body = b",".join(orjson.dumps(form) + b":[" + b",".join(e) + b"]" for form, e in forms.items())
    return head + b",{" + body + b"}]"


def encode_clock(record: ClockRecord) -> bytes:
    marks = sorted(record.marks.items())
    return right_sized(orjson.dumps((_CLOCK, record.watermark_ms, record.sources, marks)))


def encode_journal(record: JournalRecord) -> bytes:
    runs: list[list[int]] = []
    for ms in record.received_ms:
        if runs and runs[-1][0] == ms:
            runs[-1][1] += 1
        else:
            runs.append([ms, 1])
    return right_sized(orjson.dumps((_JOURNAL, record.ids, runs)))


def encode_latest_final(record: LatestFinalRecord) -> bytes:
    value = (_LATEST_FINAL, record.end_ms, orjson.Fragment(record.record))
    return right_sized(orjson.dumps(value))


def encode_baseline(values: BaselineRecord | list[Any]) -> bytes:
    """A baseline: a `BaselineRecord`, or `BaselineState`'s list of its fields in order."""
    return right_sized(orjson.dumps((_BASELINE, *values)))


# -- decoding ----------------------------------------------------------------------------


def decode(kind: Kind, raw: bytes, aggregates: type[PaneAggregate]) -> Record:
    """The record of a value of type `kind`, in any version ever written; panes restored as
    the `aggregates` kind. Raises ValueError for a version newer than this code."""
    value = orjson.loads(raw)
    if not (type(value) is list and value and type(value[0]) is str):
        return _legacy(kind, value, aggregates)
    decoder = _DECODERS.get((kind, value[0]))
    if decoder is None:
        msg = f"a {kind.name} record tagged {value[0]!r}: not a version this code reads"
        raise ValueError(msg)
    return decoder(value, aggregates)


def _decode_panes(value: list[Any], aggregates: type[PaneAggregate]) -> PanesRecord:
    _, closed_until, forms = value
    panes = sorted(
        (
            (int(entry[0]), _pane(form, entry[1:], aggregates))
            for form, entries in forms.items()
            for entry in entries
        ),
        key=lambda pane: pane[0],
    )  # in time order, as they were made
    return PanesRecord(None if closed_until is None else int(closed_until), dict(panes))


def _pane(form: str, fields: list[Any], aggregates: type[PaneAggregate]) -> Pane:
    if form == "one":
        value, observed_ms, event_id, observer = fields
        return OneValue(float(value), int(observed_ms), str(event_id), str(observer))
    if (form, len(fields)) != ("basic", _BASIC_FIELDS) and not (
        form == "full" and len(fields) in _FULL_FIELDS
    ):
        msg = f"a pane of form {form!r} with {len(fields)} fields"
        raise ValueError(msg)
    return _pane_of_state(fields, aggregates)


def _pane_of_state(state: list[Any], aggregates: type[PaneAggregate]) -> Pane:
    """A pane from an aggregate's `to_state` (either kind's, restored as `aggregates`)."""
    one = OneValue.of_state(state, aggregates)
    return one if one is not None else aggregates.from_state(state)


def _decode_clock(value: list[Any], _: type[PaneAggregate]) -> ClockRecord:
    _, watermark, sources, marks = value
    return ClockRecord(
        None if watermark is None else int(watermark),
        int(sources),
        {int(n): int(mark) for n, mark in marks},
    )


def _decode_journal(value: list[Any], _: type[PaneAggregate]) -> JournalRecord:
    _, ids, runs = value
    received = [int(ms) for ms, n in runs for _ in range(n)]
    if len(received) != len(ids):
        msg = f"a journal of {len(ids)} ids and {len(received)} receive times"
        raise ValueError(msg)
    return JournalRecord([str(i) for i in ids], received)


def _decode_latest_final(value: list[Any], _: type[PaneAggregate]) -> LatestFinalRecord:
    _, end_ms, record = value
    return LatestFinalRecord(int(end_ms), right_sized(orjson.dumps(record)))


def _decode_baseline(value: list[Any], _: type[PaneAggregate]) -> BaselineRecord:
    return BaselineRecord(*value[1:])


_DECODERS: Final[dict[tuple[Kind, str], Callable[[list[Any], type[PaneAggregate]], Record]]] = {
    (Kind.PANES, _PANES): _decode_panes,
    (Kind.CLOCK, _CLOCK): _decode_clock,
    (Kind.JOURNAL, _JOURNAL): _decode_journal,
    (Kind.LATEST_FINAL, _LATEST_FINAL): _decode_latest_final,
    (Kind.BASELINE, _BASELINE): _decode_baseline,
}


# -- values written before tags (version 0) ---------------------------------------------


def _legacy(kind: Kind, value: Any, aggregates: type[PaneAggregate]) -> Record:
    """The untagged values: panes `[closed_until, [[start, state], ...]]` (state: either
    kind's `to_state`, told apart by length), clock a bare watermark (1) or an object with
    `v` 2, journal `[[id, received ms], ...]`, final `[end ms, record as a string]`,
    baseline its 6 fields, or 5 (written before it kept `seen_ms`)."""
    if kind is Kind.PANES:
        closed_until, panes = value
        return PanesRecord(
            None if closed_until is None else int(closed_until),
            {int(p): _pane_of_state(state, aggregates) for p, state in panes},
        )
    if kind is Kind.CLOCK:
        if not isinstance(value, dict):
            return ClockRecord(None if value is None else int(value), 0, {})
        marks = dict(value.get("marks", {}))
        return ClockRecord(
            value.get("watermark"),
            int(value.get("sources", 0)),
            {int(n): int(mark) for n, mark in marks.items()},
        )
    if kind is Kind.JOURNAL:
        return JournalRecord([str(k) for k, _ in value], [int(ms) for _, ms in value])
    if kind is Kind.LATEST_FINAL:
        end_ms, record = value
        return LatestFinalRecord(int(end_ms), str(record).encode())
    fields = list(value)
    if len(fields) == _BASELINE_FIELDS_BEFORE_SEEN:
        fields.append(None)
    return BaselineRecord(*fields)
