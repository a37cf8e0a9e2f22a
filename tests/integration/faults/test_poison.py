"""Poison input at volume: over 100,000 messages, bad and good interleaved, into one worker.

Two corpora, the same every run (but for the times relative to the clock):
- hypothesis (derandomized): random bytes, deep and wide JSON, huge strings around the size
  limit, wrong types per field, unicode edge cases, NaN and Infinity, numeric strings,
  booleans, naive timestamps; escaped lone surrogates (`"s\\ud800"`) in every string field
  and attribute names; date extremes near years 1 and 9999 with offsets up to +-23:59 and
  epoch milliseconds far out of range; invalid UTF-8 keys; garbage headers. Its expected
  reasons are the project codec's verdicts (`decode_observation`), plus the worker's clock
  bound (an `observed_at` over INSIGHTS_MAX_FUTURE ahead is `invalid`), applied here.
- a seeded generator, for volume, whose every message says what it is: tens of thousands of
  valid observations of a couple of thousand subjects (RFC 3339 in every allowed form,
  offsets +-23:59, 9 fraction digits, epoch milliseconds, escaped valid surrogate pairs, 32
  attributes, exactly the size limit), and as many mutants of them, each with its expected
  reason and the fields its errors must name: escaped lone surrogates (`\\ud800`, `\\udfff`,
  a reversed pair `\\udc00\\ud800`, lower and upper case hex) in event_id, observer_id,
  subject_id, metric, group_id, attribute names and values (`invalid`), raw CESU-8 surrogate
  bytes (`undecodable`), the date extremes (`9999-12-31T23:59:59-23:59`,
  `0001-01-01T00:00:00+23:59`, impossible dates and offsets), the year-9999 window end
  (`9999-12-31T23:59:59Z`) and other far-future times (the clock bound), epoch milliseconds
  beyond the datetime range (2**63, -2**63, 253402300800000, ...), values beyond +-1e150,
  other schema versions (`unsupported_version`), one byte over the size limit (`too_large`),
  truncated and byte-spoilt JSON (`undecodable`). Its keys include invalid UTF-8 (lone
  surrogates b"\\xed\\xa0\\x80", b"\\xff\\xfe", truncated multibyte sequences); its headers
  are garbage on good and bad messages alike (binary, null and empty values, values of
  kilobytes, empty, duplicated and invalid-UTF-8 names, `traceparent` and `tracestate` of
  garbage). Every generated verdict is checked against the codec before anything is sent.

The worker runs with tracing on (sampling nothing), so every `traceparent` is read. It never
stops: the same process throughout, no crash or failure in its log, `/healthz` and `/readyz`
200 at the end. Every bad message is exactly one dead letter, matched by its source partition
and offset, with the expected reason (and fields), its original key and value bytes; every
valid observation is counted exactly once: in `/metrics` and in the final window records."""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models import (
    DeadLetter,
    DecodeError,
    decode_observation,
    format_utc,
    from_epoch_ms,
    loads_model,
    to_epoch_ms,
)
from tests.integration.faults.conftest import (
    PARTITIONS,
    metric,
    partition_of,
    poll,
    read_all,
    wait_drained,
)
from tests.support.broker import Broker
from tests.support.kafka_io import create_topic, produce
from tests.support.scenario import BASE_MS, FLUSH_METRIC, encode
from tests.support.truth import Event
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_BYTES = 65_536  # INSIGHTS_MAX_MESSAGE_BYTES, set explicitly below
MAX_FUTURE_MS = 600_000  # INSIGHTS_MAX_FUTURE, set explicitly below
# A codec-valid observed_at this far past the clock bound is `invalid` for sure (the worker
# reads it within this long of its drawing); nearer to the bound it is not sent.
FUTURE_MARGIN_MS = 3_600_000
WINDOW_MS = 3_600_000  # one tumbling hour: every valid observation of a subject in one window
WINDOW_START = BASE_MS  # 2026-11-27T10:00:00Z, a multiple of an hour
# Valid observations lie in [start + 1 min, start + 50 min): none can close the window.
GOOD_FROM = WINDOW_START + 60_000
GOOD_UNTIL = WINDOW_START + 50 * 60_000
VALID = 60_000  # generated valid observations
SUBJECTS = 2_000  # their distinct subjects (each with two metrics, and a flusher)
MUTANTS = 42_000  # generated bad messages
BATCHES = 80  # hypothesis examples drawn, each a list of poison messages
MIN_MESSAGES = 100_000
HEADER_SHARE = 0.3  # messages with garbage headers
REASONS = {"undecodable", "invalid", "too_large", "unsupported_version"}  # never `late` here
WORKER_ENV = {
    "INSIGHTS_TOPIC_PARTITIONS": str(PARTITIONS),
    "INSIGHTS_WINDOWS": "tumbling:3600s",
    "INSIGHTS_GRACE": "30m",
    "INSIGHTS_IDLE_TIMEOUT": "1h",
    "INSIGHTS_EMIT": "final",
    "INSIGHTS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
    "INSIGHTS_MAX_FUTURE": f"{MAX_FUTURE_MS // 1000}s",
    # Tracing on, so every message's traceparent is extracted; no span is sampled or written.
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_TRACES_SAMPLER": "always_off",
}

# -- messages ---------------------------------------------------------------------------------


class RawName(str):
    """A header name sent as the given bytes, also when they are not UTF-8 (as librdkafka
    producers can; the protocol's String is not checked by brokers). aiokafka's pure-Python
    batch builder writes `name.encode("utf-8")`."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    reason: str | None  # the expected dead-letter reason; None: a valid observation
    event_id: str | None = None  # a valid one's
    subject: str | None = None  # a valid one's
    headers: Headers = ()
    kind: str = "hypothesis"  # the class that made it, for the summary
    fields: frozenset[str] = frozenset()  # fields the dead letter's errors must name
    # what the dead letter's event_id must be; None: not checked
    letter_event_id: tuple[str | None] | None = None

    @property
    def raw_headers(self) -> bool:
        return any(isinstance(name, RawName) for name, _ in self.headers)


def to_json(document: Any, mode: str = "ascii") -> bytes:
    """JSON bytes of `document`; lone surrogates in it are written as `\\uXXXX` escapes
    (`ascii`: everything non-ASCII escaped, `escaped`/`upper`: only the surrogates, in lower
    or upper case hex, the rest as UTF-8) or as raw CESU-8 bytes (`raw`: not UTF-8)."""
    if mode == "ascii":
        return json.dumps(document, ensure_ascii=True).encode()
    text = json.dumps(document, ensure_ascii=False)
    if mode == "raw":
        return text.encode("utf-8", "surrogatepass")
    hexdigits = "{:04X}" if mode == "upper" else "{:04x}"
    return _SURROGATE.sub(lambda m: "\\u" + hexdigits.format(ord(m.group())), text).encode()


_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


# -- hypothesis: what a poison message looks like --------------------------------------------

FIELDS = ("event_id", "observer_id", "subject_id", "metric", "value", "observed_at")
# Unicode edge cases (no lone surrogates: they cannot be UTF-8): NUL and other controls,
# BOM, zero-width and bidi marks, combining marks, noncharacters, astral emoji with ZWJ.
EDGE_CHARS = [
    "\x00", "\x01", "\x7f", "\u0085", "\u00a0", "\ufeff", "\u200b", "\u200d", "\u202e",
    "\u2028", "\u0301", "\ufffd", "\uffff", "\U0010ffff", "\U0001f600",
    "\U0001f469\u200d\U0001f4bb", "\U0001f1fa\U0001f1f8", "e\u0301", "\\", '"', "\ud7ff", "\ue000",
]  # fmt: skip
edge_text = st.lists(
    st.one_of(st.sampled_from(EDGE_CHARS), st.text(st.characters(codec="utf-8"), max_size=4)),
    max_size=12,
).map("".join)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    edge_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(edge_text, inner, max_size=6)
    ),
    max_leaves=40,
)
# Keys that are not UTF-8: lone surrogates in CESU-8, bytes UTF-8 never has, overlong and
# truncated sequences, a code point past U+10FFFF.
BAD_KEYS = [
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"s-\xed\xb0\x80\xed\xa0\x80", b"\xff\xfe", b"\xff",
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"s-17\xe2", b"\xc0\xaf", b"\xf4\x90\x80\x80",
    b"\x80\x80", b"\xfe\xff\x00\x00",
]  # fmt: skip
GARBAGE_TRACEPARENTS = [
    b"", b"\xff\x00garbage", b"00-zzzz-01", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01",
    b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01", b"ff-" + b"a" * 32 + b"-" + b"b" * 16 + b"-ff",
    b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01-extra", b"\xed\xa0\x80", b"0" * 600,
    "00-\u00e9\u00e9-01".encode(),
]  # fmt: skip
TRACE_NAMES = ["traceparent", "tracestate", "TraceParent", "TRACEPARENT"]
# Lone surrogates and sequences of them (a reversed pair, two highs, a high before a letter)
LONE = ["\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800", "\ud800\ud800", "\ud800A"]


_serial = itertools.count()


def base_observation() -> dict[str, Any]:
    """A valid observation for poison to be made of (its own event_id and subject)."""
    n = next(_serial)
    return {
        "event_id": f"poison-{n}",
        "observer_id": "o-poison",
        "subject_id": f"p-{n}",
        "metric": "temp",
        "value": 21.5,
        "observed_at": "2026-11-27T10:30:00Z",
    }


@st.composite
def deep_json(draw: st.DrawFn) -> bytes:
    """Arrays and objects nested up to ~2500 deep (past orjson's and Python's limits)."""
    depth = draw(st.integers(1, 2500))
    leaf = dumps(draw(json_scalar))
    if draw(st.booleans()):
        return b"[" * depth + leaf + b"]" * depth
    key = dumps(draw(edge_text))
    return b"{" + (key + b":{") * (depth - 1) + key + b":" + leaf + b"}" * depth


@st.composite
def wide_json(draw: st.DrawFn) -> bytes:
    """Thousands of keys or items, some observation-shaped."""
    width = draw(st.integers(100, 6000))
    leaf = draw(json_scalar)
    if draw(st.booleans()):
        return dumps([leaf] * width)
    document: dict[str, Any] = {f"k{i}": leaf for i in range(width)}
    if draw(st.booleans()):
        document.update(base_observation())
        document["attributes"] = {f"a{i}": str(leaf) for i in range(width)}
    return dumps(document)


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    """An observation padded to a size just under, at or over the limit (huge strings in
    a field), or a bare string of that size."""
    size = draw(
        st.one_of(
            st.integers(MAX_BYTES - 64, MAX_BYTES + 64), st.integers(MAX_BYTES, 2 * MAX_BYTES)
        )
    )
    unit = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=3))
    document: dict[str, Any] = base_observation()
    target = draw(st.sampled_from(["observer_id", "subject_id", "event_id", "attributes", "bare"]))
    document[target] = ""
    shell = len(dumps(document)) if target != "bare" else 2
    if target == "attributes":
        shell += len(b'{"x":}')
    room = max(size - shell, 0)
    filler = (unit * (room // max(len(unit.encode()), 1) + 1)).encode()[:room]
    text = filler.decode("utf-8", errors="ignore")
    if target == "bare":
        return dumps(text)
    document[target] = {"x": text} if target == "attributes" else text
    return dumps(document)


WRONG: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(st.just(""), st.text(min_size=129, max_size=300), json_value),
    "observer_id": st.one_of(st.just(""), st.text(min_size=129, max_size=300), json_value),
    "subject_id": st.one_of(st.just(""), st.text(min_size=257, max_size=400), json_value),
    "metric": st.one_of(st.just(""), edge_text, st.text(min_size=129, max_size=200), json_value),
    "value": st.one_of(
        st.booleans(),
        st.floats().map(str),  # numeric strings, "nan", "inf"
        st.integers().map(str),
        json_value,
    ),
    "observed_at": st.one_of(
        st.sampled_from(
            ["2026-11-27T10:30:00", "2026-11-27 10:30:00", "2026-11-27", "10:30", "now", ""]
        ),
        st.datetimes().map(lambda d: d.isoformat()),  # naive
        st.booleans(),
        st.floats(),
        edge_text,
        st.lists(json_scalar, max_size=3),
    ),
    "group_id": st.one_of(st.just(""), st.text(min_size=129, max_size=200), json_value),
    "attributes": st.one_of(
        st.dictionaries(st.text(max_size=5), json_scalar, min_size=1, max_size=40), json_value
    ),
    "schema_version": st.one_of(st.integers(), st.booleans(), json_value),
}


@st.composite
def wrong_types(draw: st.DrawFn) -> bytes:
    """An observation with one to three fields replaced or removed; NaN/Infinity literals."""
    document: dict[str, Any] = base_observation()
    for name in draw(st.lists(st.sampled_from(sorted(WRONG)), min_size=1, max_size=3)):
        if name in FIELDS and draw(st.integers(0, 5)) == 0:
            document.pop(name, None)
        else:
            document[name] = draw(WRONG[name])
    raw = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    literal = draw(st.sampled_from([None, b"NaN", b"Infinity", b"-Infinity"]))
    if literal is not None:
        raw = raw.replace(b'"value": 21.5', b'"value": ' + literal)
    return raw


lone_surrogates = st.lists(st.integers(0xD800, 0xDFFF).map(chr), min_size=1, max_size=3).map(
    "".join
)
STRING_PLACES = ["event_id", "observer_id", "subject_id", "metric", "group_id", "name", "text"]


@st.composite
def escaped_surrogates(draw: st.DrawFn) -> bytes:
    """An observation with lone surrogates written as JSON escapes in one to three of its
    string fields (attribute names and values too), now and then as raw bytes."""
    document: dict[str, Any] = base_observation()
    for place in draw(st.lists(st.sampled_from(STRING_PLACES), min_size=1, max_size=3)):
        text = draw(edge_text)
        at = draw(st.integers(0, len(text)))
        spoilt = text[:at] + draw(lone_surrogates) + text[at:]
        if place == "name":
            document["attributes"] = {spoilt: draw(edge_text)}
        elif place == "text":
            document["attributes"] = {draw(edge_text): spoilt}
        else:
            document[place] = spoilt
    return to_json(document, draw(st.sampled_from(["ascii", "escaped", "upper", "raw"])))


# Local times of the first and last days a datetime holds (naive: hypothesis adds the zone)
LATEST_DAY = datetime(9999, 12, 30)  # noqa: DTZ001
EARLIEST_DAY = datetime(1, 1, 2)  # noqa: DTZ001
offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def extreme_dates(draw: st.DrawFn) -> bytes:
    """An observation dated at the ends of the datetime range (with offsets up to +-23:59),
    at impossible dates, or in epoch milliseconds far out of range."""
    document: dict[str, Any] = base_observation()
    document["observed_at"] = draw(
        st.one_of(
            st.sampled_from(DATES_INVALID + DATES_FUTURE),
            st.sampled_from(EPOCHS_INVALID),
            st.integers(-(2**64), 2**64),
            st.datetimes(LATEST_DAY, timezones=offsets).map(datetime.isoformat),
            st.datetimes(max_value=EARLIEST_DAY, timezones=offsets).map(datetime.isoformat),
        )
    )
    return to_json(document)


header_name = st.one_of(
    st.sampled_from(TRACE_NAMES),
    st.sampled_from(TRACE_NAMES),
    st.text(max_size=20),
    st.text(max_size=20),
    st.just(""),
    st.sampled_from(BAD_KEYS).map(RawName),  # not UTF-8
)
header_value = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from(GARBAGE_TRACEPARENTS),
    st.integers(1000, 4096).map(lambda n: random.Random(n).randbytes(n)),
)
poison_headers = st.lists(st.tuples(header_name, header_value), max_size=6).map(tuple)
poison_value = st.one_of(
    st.binary(max_size=300),
    edge_text.map(str.encode),
    json_value.map(dumps),
    deep_json(),
    wide_json(),
    huge(),
    wrong_types(),
    escaped_surrogates(),
    extreme_dates(),
    st.sampled_from([b"", b"null", b"{}", b"[]", b"NaN", b"{", b'{"a":', b"\xef\xbb\xbf{}"]),
    st.none(),  # a tombstone
)
poison_key = st.one_of(
    st.none(), st.binary(max_size=40), edge_text.map(str.encode), st.sampled_from(BAD_KEYS)
)


def sendable(
    drawn: tuple[bytes | None, bytes | None, Headers],
) -> tuple[bytes | None, bytes | None, Headers]:
    """Kafka needs a key or a value: a tombstone gets a key."""
    key, value, headers = drawn
    return (b"tombstone" if key is None and value is None else key), value, headers


def codec_verdict(value: bytes | None) -> tuple[str | None, int | None, Any]:
    """The project codec's reason (None: valid), and a valid one's observed_ms and record."""
    try:
        observation = decode_observation(value, max_bytes=MAX_BYTES)
    except DecodeError as exc:
        return str(exc.reason), None, None
    return None, to_epoch_ms(observation.observed_at), observation


def draw_poison(now_ms: int) -> list[Message]:
    """BATCHES lists of poison (key, value, headers) drawn by hypothesis, derandomized: the
    same corpus every run. The codec's verdict is the expected reason; what it accepts is
    kept as valid when it falls in the test's window (nothing valid may move a watermark
    past it), as `invalid` when it lies well beyond the worker's clock bound, and not sent
    otherwise."""
    drawn: list[tuple[bytes | None, bytes | None, Headers]] = []

    @settings(
        max_examples=BATCHES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(
            st.tuples(poison_key, poison_value, poison_headers).map(sendable),
            min_size=40,
            max_size=120,
        )
    )
    def collect(batch: list[tuple[bytes | None, bytes | None, Headers]]) -> None:
        drawn.extend(batch)

    collect()
    kept = []
    for key, value, headers in drawn:
        reason, observed, observation = codec_verdict(value)
        if reason is not None:
            kept.append(Message(key, value, reason, headers=headers))
            continue
        assert observed is not None
        if WINDOW_START <= observed < GOOD_UNTIL:
            kept.append(
                Message(key, value, None, observation.event_id, observation.subject_id, headers)
            )
        elif observed > now_ms + MAX_FUTURE_MS + FUTURE_MARGIN_MS:
            kept.append(
                Message(key, value, "invalid", headers=headers, fields=frozenset({"observed_at"}))
            )
    return kept


# -- the seeded generator: valid observations and their mutants at volume ---------------------

OBSERVERS = ["o1", "o2", "o3", "o4", "o-\U0001f600", "o-\u00e9\u0301"]
METRICS = ["temp", "rh.pct:1_a-b"]
# Text that is valid Unicode, for attributes: escaped valid pairs, controls, NUL, BOM, ...
VALID_TEXT = [
    "\U0001f600", "\U0010ffff", "\x00", "\ufeff", "e\u0301", "\u202e", "\\", '"', "\uffff",
]  # fmt: skip
# observed_at that the codec takes but that lies beyond any clock (the year-9999 window end)
DATES_FUTURE = [
    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999999Z", "9999-12-31t23:59:59z",
    "9999-12-31T23:59:59+00:00", "9999-12-31T00:00:00-00:00", "9999-12-31T23:59:59.999+23:59",
    "2100-01-01T00:00:00Z",
]  # fmt: skip
# observed_at that are no moment of years 1 to 9999 in UTC, or no date at all
DATES_INVALID = [
    "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59-00:01", "9999-12-31T23:00:00-01:00",
    "0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00.000+01:00",
    "0000-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "9999-12-32T00:00:00Z",
    "2026-02-29T00:00:00Z", "2026-11-27T24:00:00Z", "2026-11-27T10:30:60Z",
    "2026-11-27T10:30:00+24:00", "2026-11-27T10:30:00-99:99", "2026-11-27T10:30:00.Z",
    "2026-11-27T10:30:00.1234567890Z", "+2026-11-27T10:30:00Z", "2026-11-27T10:30:00 Z",
]  # fmt: skip
EPOCHS_INVALID: list[Any] = [
    2**63, -(2**63), 2**63 - 1, 2**64 - 1, 2**64, -(2**64), 253_402_300_800_000,
    -62_135_596_800_001, 10**30, -(10**30), 1.7957736e12, -0.0,
]  # fmt: skip
# Integers other than 1 (within 64 bits: JSON parsers read them as integers)
VERSIONS = [0, 2, -1, 3, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]
VALUES_INVALID: list[Any] = [1.0000000000000002e150, -1.0000000000000002e150, 1e300, -1e308]
# Where a lone surrogate is put, and the field its dead letter's errors name
SURROGATE_PLACES = {
    "event_id": "event_id",
    "observer_id": "observer_id",
    "subject_id": "subject_id",
    "metric": "metric",
    "group_id": "group_id",
    "name": "attributes",
    "text": "attributes",
}


def observed_text(rng: random.Random, ms: int) -> Any:
    """`ms` as one of the forms of observed_at the contract allows, picked at random."""
    moment = from_epoch_ms(ms)
    form = rng.randrange(8)
    if form == 0:
        return ms
    if form == 1:  # any offset up to +-23:59: the local time of the same instant
        minutes = rng.randint(-1439, 1439)
        local = moment + timedelta(minutes=minutes)
        sign = "-" if minutes < 0 else "+"
        hours, rest = divmod(abs(minutes), 60)
        fraction = f".{ms % 1000:03d}" if rng.random() < 0.5 else ""
        if fraction == "" and ms % 1000:
            return format_utc(moment)
        return f"{local:%Y-%m-%dT%H:%M:%S}{fraction}{sign}{hours:02d}:{rest:02d}"
    if form == 2:  # nine fraction digits (below a millisecond: truncated)
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{rng.randrange(10**6):06d}Z"
    if form == 3:
        return format_utc(moment).lower()
    if form == 4:
        return format_utc(moment).replace("T", " ")
    if form == 5:
        return format_utc(moment).replace("Z", "-00:00")
    return format_utc(moment)


def garbage_headers(rng: random.Random) -> Headers:
    """One to six headers of garbage: names from tracing's, random text, empty, repeated
    and (rarely) not UTF-8; values null, empty, binary, kilobytes, garbage traceparents."""
    out: list[tuple[str, bytes | None]] = []
    for _ in range(rng.randint(1, 6)):
        pick = rng.random()
        if pick < 0.35:
            name: str = rng.choice(TRACE_NAMES)
        elif pick < 0.5 and out:
            name = out[-1][0]  # a repeated name
        elif pick < 0.6:
            name = ""
        elif pick < 0.99:
            name = "".join(rng.choice("abcxyz-_.\x00\u00e9\U0001f600") for _ in range(8))
        else:
            name = RawName(rng.choice(BAD_KEYS))
        pick = rng.random()
        value: bytes | None
        if pick < 0.15:
            value = None
        elif pick < 0.45:
            value = rng.choice(GARBAGE_TRACEPARENTS)
        elif pick < 0.9:
            value = rng.randbytes(rng.randint(0, 64))
        else:
            value = rng.randbytes(rng.randint(1000, 4096))
        out.append((name, value))
    return tuple(out)


def pick_key(rng: random.Random, subject: str) -> bytes | None:
    pick = rng.random()
    if pick < 0.7:
        return subject.encode("utf-8", "surrogatepass")  # a lone surrogate: not UTF-8
    if pick < 0.8:
        return None
    if pick < 0.95:
        return rng.choice(BAD_KEYS)
    return rng.randbytes(rng.randint(0, 40))


def subject_of(i: int) -> str:
    return f"good-s-{i % SUBJECTS}"


def valid_document(rng: random.Random, i: int, prefix: str) -> dict[str, Any]:
    """A valid observation of one of the SUBJECTS, in the window; some with attributes."""
    document: dict[str, Any] = {
        "event_id": f"{prefix}-{i}",
        "observer_id": rng.choice(OBSERVERS),
        "subject_id": subject_of(rng.randrange(SUBJECTS)),
        "metric": rng.choice(METRICS),
        "value": round(rng.gauss(50, 12), 4) if rng.random() < 0.9 else rng.randint(-99, 99),
        "observed_at": observed_text(rng, rng.randrange(GOOD_FROM, GOOD_UNTIL)),
    }
    if rng.random() < 0.1:
        document["value"] = rng.choice([1e150, -1e150, 0.0, -0.0, 5e-324])
    if rng.random() < 0.15:
        count = rng.choice([1, 32])
        document["attributes"] = {
            f"a{n}{rng.choice(VALID_TEXT)}": rng.choice(VALID_TEXT) * rng.randint(0, 3)
            for n in range(count)
        }
    if rng.random() < 0.05:
        document["schema_version"] = 1
    return document


def generated_valid(rng: random.Random) -> list[Message]:
    """VALID valid observations (every subject gets some), a few exactly MAX_BYTES long."""
    out = []
    for i in range(VALID):
        document = valid_document(rng, i, "good")
        document["subject_id"] = subject_of(i)
        kind = "valid"
        mode = rng.choice(["ascii", "escaped"])
        if i % 3000 == 0:  # exactly the size limit: still valid
            document["attributes"] = {"pad": ""}
            size = len(to_json(document, mode))
            document["attributes"]["pad"] = "x" * (MAX_BYTES - size)
            kind = "valid at the size limit"
        value = to_json(document, mode)
        assert kind == "valid" or len(value) == MAX_BYTES
        headers = garbage_headers(rng) if rng.random() < HEADER_SHARE else ()
        out.append(
            Message(
                pick_key(rng, document["subject_id"]),
                value,
                None,
                document["event_id"],
                document["subject_id"],
                headers,
                kind,
            )
        )
    return out


NOT_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"]  # bytes UTF-8 never has


def spoil(rng: random.Random, text: str) -> str:
    at = rng.randint(0, len(text))
    return text[:at] + rng.choice(LONE) + text[at:]


def mutant(rng: random.Random, i: int) -> Message:
    """A valid observation made bad one way; its expected reason and error fields."""
    document = valid_document(rng, i, "bad")
    event_id: tuple[str | None] | None = (document["event_id"],)  # read, valid or not
    fields: set[str] = set()
    mode = "ascii"
    pick = rng.random()
    if pick < 0.40:
        kind, reason = "lone surrogate", "invalid"
        count = rng.choice([1, 1, 1, 2, len(SURROGATE_PLACES)])  # now and then all of them
        places = rng.sample(sorted(SURROGATE_PLACES), count)
        for place in places:
            if place == "name":
                document.setdefault("attributes", {})[spoil(rng, "floor")] = "3"
            elif place == "text":
                document.setdefault("attributes", {})["room"] = spoil(rng, "r-\u00e9")
            else:
                document[place] = spoil(rng, document.get(place, "g-1"))
            fields.add(SURROGATE_PLACES[place])
        if "event_id" in places:
            event_id = None  # cannot be written as UTF-8: not checked
        mode = rng.choice(["ascii", "escaped", "upper", "upper"])
        if rng.random() < 0.08:
            kind, reason, mode = "raw surrogate bytes", "undecodable", "raw"
            fields, event_id = {""}, (None,)
    elif pick < 0.55:
        kind, reason = "date extreme", "invalid"
        document["observed_at"] = rng.choice(DATES_INVALID)
        fields.add("observed_at")
    elif pick < 0.65:
        kind, reason = "beyond the clock", "invalid"
        ahead = rng.choice([2 * 3_600_000, 86_400_000, 3650 * 86_400_000])
        later = int(time.time() * 1000) + ahead
        document["observed_at"] = rng.choice(
            [rng.choice(DATES_FUTURE), observed_text(rng, later), 253_402_300_799_999]
        )
        fields.add("observed_at")
    elif pick < 0.75:
        kind, reason = "epoch out of range", "invalid"
        document["observed_at"] = rng.choice(EPOCHS_INVALID)
        fields.add("observed_at")
    elif pick < 0.82:
        kind, reason = "other schema version", "unsupported_version"
        document["schema_version"] = rng.choice(VERSIONS)
        if rng.random() < 0.3:  # checked before the other fields
            document["observer_id"] = spoil(rng, "o1")
            mode = "upper"
        fields.add("schema_version")
    elif pick < 0.88:
        kind, reason = "value out of range", "invalid"
        document["value"] = rng.choice(VALUES_INVALID)
        fields.add("value")
    else:
        kind, reason, fields, event_id = "not JSON", "undecodable", {""}, (None,)
        raw = to_json(document, "escaped")
        if rng.random() < 0.5:  # cut short
            raw = raw[: rng.randrange(len(raw) - 1)]
        else:  # a byte UTF-8 never has, inside a string
            at = raw.index(b'"subject_id": "') + len(b'"subject_id": "')
            raw = raw[:at] + rng.choice(NOT_UTF8) + raw[at:]
        return Message(
            pick_key(rng, document["subject_id"]),
            raw,
            reason,
            headers=garbage_headers(rng) if rng.random() < HEADER_SHARE else (),
            kind=kind,
            fields=frozenset(fields),
            letter_event_id=event_id,
        )
    return Message(
        pick_key(rng, document["subject_id"]),
        to_json(document, mode),
        reason,
        headers=garbage_headers(rng) if rng.random() < HEADER_SHARE else (),
        kind=kind,
        fields=frozenset(fields),
        letter_event_id=event_id,
    )


def too_large(rng: random.Random, n: int) -> list[Message]:
    """Valid observations one to a few bytes over the limit."""
    out = []
    for i in range(n):
        document = valid_document(rng, i, "large")
        document["attributes"] = {"pad": ""}
        size = len(to_json(document))
        document["attributes"]["pad"] = "x" * (MAX_BYTES - size + rng.randint(1, 4))
        out.append(
            Message(
                pick_key(rng, document["subject_id"]),
                to_json(document),
                "too_large",
                kind="one byte over the limit",
                fields=frozenset({""}),
                letter_event_id=(None,),
            )
        )
    return out


def generated(seed: int) -> list[Message]:
    """The seeded corpus; every message's verdict checked against the codec's (which knows
    no clock: the far-future ones it must accept, dated past the worker's bound)."""
    rng = random.Random(seed)
    corpus = generated_valid(rng) + [mutant(rng, i) for i in range(MUTANTS)] + too_large(rng, 40)
    now_ms = int(time.time() * 1000)
    for message in corpus:
        reason, observed, observation = codec_verdict(message.value)
        assert (observed is None) == (reason is not None)
        if message.kind == "beyond the clock":
            assert observed is not None, (message, reason)
            assert observed > now_ms + MAX_FUTURE_MS + FUTURE_MARGIN_MS, message
        else:
            assert reason == message.reason, (message.kind, message.value, reason)
        if message.reason is None:
            assert observed is not None, (message, reason)
            assert observation.event_id == message.event_id, message
            assert observation.subject_id == message.subject, message
            assert GOOD_FROM <= observed < GOOD_UNTIL, message
    return corpus


# -- sending and watching ---------------------------------------------------------------------


async def send_recording(
    bootstrap: str, topic: str, messages: list[Message]
) -> dict[tuple[int, int], Message]:
    """Send in order; each message by the (partition, offset) the broker gave it. Headers
    with names that are not UTF-8 go in a batch of their own, built by aiokafka's
    pure-Python builder (its C builder takes only `str` names)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        for n, m in enumerate(messages):
            if not m.raw_headers:
                sent = await producer.send(topic, key=m.key, value=m.value, headers=list(m.headers))
            else:
                batch = producer.create_batch()
                batch._builder = _DefaultRecordBatchBuilderPy(
                    2, 0, 0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=1 << 21
                )
                assert batch.append(
                    timestamp=None, key=m.key, value=m.value, headers=list(m.headers)
                )
                partition = partition_of(m.key) if m.key else n % PARTITIONS
                sent = await producer.send_batch(batch, topic, partition=partition)
            futures.append(sent)
        placed = {}
        for message, future in zip(messages, futures, strict=True):
            meta = await future
            placed[(meta.partition, meta.offset)] = message
    finally:
        await producer.stop()
    return placed


# aiokafka logs these at error level and retries: a fresh broker creates its offsets topic
# while the first group looks for its coordinator. Not a failure of the worker.
TRANSIENT_ERRORS = ("GroupCoordinatorNotAvailableError",)
FAILURE_EVENTS = ("worker_failed", "batch_failed", "Crashed", "crash", "shutdown_overdue")


class Watch:
    """The worker must stay the same live process with a clean log: checked on every poll
    (reading only the log's new lines), so a crash fails the test at once."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.pid = worker.process.pid
        self.offset = 0
        self.failures: list[str] = []

    def new_failures(self) -> list[str]:
        path = Path(self.worker.log_path)
        with path.open("rb") as file:
            file.seek(self.offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for raw in complete.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"event": raw.decode("utf-8", "replace"), "level": "raw"}
            event = str(entry.get("event", ""))
            if any(transient in event for transient in TRANSIENT_ERRORS):
                continue
            if entry.get("level") in ("error", "critical") or any(
                marker in event for marker in FAILURE_EVENTS
            ):
                self.failures.append(raw.decode("utf-8", "replace")[:3000])
        return self.failures

    def assert_healthy(self) -> None:
        failures = self.new_failures()
        if failures:
            raise AssertionError("worker log failures:\n" + "\n".join(failures[:5]))
        code = self.worker.process.poll()
        assert code is None, f"worker exited with {code}:\n{self.worker.log_tail()}"
        assert self.worker.process.pid == self.pid

    def guard(self, check: Callable[[], bool]) -> Callable[[], bool]:
        def guarded() -> bool:
            self.assert_healthy()
            return check()

        return guarded


def original(text: str | None, encoding: str | None) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode()


def key_encoding(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return "base64"
    return "utf-8"


def names_field(errors: Sequence[Any], field: str) -> bool:
    return any(e.field == field or e.field.startswith(field + ".") for e in errors)


# -- the test --------------------------------------------------------------------------------


async def test_poison_input_at_volume(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    began = time.monotonic()
    poison = draw_poison(int(time.time() * 1000))
    drawn_s = time.monotonic() - began
    corpus = generated(7)
    rng = random.Random(11)
    messages = poison + corpus
    rng.shuffle(messages)
    made_s = time.monotonic() - began
    bad = [m for m in messages if m.reason is not None]
    valid = [m for m in messages if m.reason is None]
    assert len({m.event_id for m in valid}) == len(valid), "valid event_ids must be unique"
    assert len(messages) >= MIN_MESSAGES, len(messages)
    assert len(bad) >= 40_000, len(bad)
    subjects = sorted({m.subject for m in valid if m.subject is not None})
    assert len(subjects) <= 5_000, len(subjects)

    bootstrap = broker.bootstrap_servers
    await create_topic(bootstrap, names.input, PARTITIONS)
    worker = start_worker(**WORKER_ENV)
    worker.wait_ready()
    watch = Watch(worker)
    placed = await send_recording(bootstrap, names.input, messages)
    sent_s = time.monotonic() - began

    # Every valid observation has been accepted (the counter), then the flushers close the
    # window of every subject: one event two hours later per subject, and per partition.
    await poll(
        watch.guard(lambda: metric(worker, "insights_events_valid_total") >= len(valid)),
        240.0,
        f"{len(valid)} valid events counted",
        period_s=0.5,
    )
    # Counted at ingest is not yet folded in: a record still crossing the keyed topic
    # would land behind its partition's flusher and be late.
    await wait_drained(broker, names)
    watch.assert_healthy()
    far = WINDOW_START + 2 * WINDOW_MS
    flushers: list[tuple[bytes | None, bytes]] = [
        (s.encode(), encode(Event(f"flush-{i}", "o-flush", s, FLUSH_METRIC, 0.0, far)))
        for i, s in enumerate(subjects)
    ]
    await produce(bootstrap, names.input, flushers)
    for partition in range(PARTITIONS):
        event = Event(
            f"flush-src-{partition}", "o-flush", f"flush-src-{partition}", FLUSH_METRIC, 0.0, far
        )
        await produce(bootstrap, names.input, [(None, encode(event))], partition=partition)
        flushers.append((None, encode(event)))

    # Dead letters: exactly one per poison message, by source position.
    await poll(
        watch.guard(lambda: metric(worker, "insights_dead_letters_total") >= len(bad)),
        240.0,
        f"{len(bad)} dead letters",
        period_s=0.5,
    )
    letters = [
        loads_model(DeadLetter, r.value) for r in await read_all(bootstrap, names.deadletter)
    ]
    by_position: dict[tuple[int, int], DeadLetter] = {}
    for letter in letters:
        position = (letter.partition, letter.offset)
        assert position not in by_position, f"two dead letters for {position}"
        by_position[position] = letter
    expected_positions = {p for p, m in placed.items() if m.reason is not None}
    assert set(by_position) == expected_positions, (
        f"missing {len(expected_positions - set(by_position))}, "
        f"unexpected {len(set(by_position) - expected_positions)}: "
        f"{[placed[p] for p in sorted(set(by_position) - expected_positions)][:3]}"
    )
    for position, letter in by_position.items():
        message = placed[position]
        where = (position, message.kind, letter.reason, letter.errors, message.value)
        assert letter.topic == names.input
        assert letter.reason.value in REASONS, where
        assert letter.reason.value == message.reason, where
        assert letter.errors, where
        for field in message.fields:
            assert names_field(letter.errors, field), (field, *where)
        if message.letter_event_id is not None:
            assert letter.event_id == message.letter_event_id[0], where
        assert letter.value_bytes is None and letter.key_bytes is None, where
        assert original(letter.value, letter.encoding) == message.value, where
        assert letter.key_encoding == key_encoding(message.key), where
        assert original(letter.key, letter.key_encoding) == message.key, where

    # Every valid observation counted exactly once: the counter and the window finals.
    rolling: list[Any] = []

    async def finals_complete() -> bool:
        nonlocal rolling
        watch.assert_healthy()
        rolling = await read_all(bootstrap, names.rolling)
        return set(final_counts(rolling)) >= set(count_by_subject(valid))

    await poll(finals_complete, 120.0, "finals of every subject", period_s=1.0)
    counts = final_counts(rolling)
    assert sum(counts.values()) == len(valid)
    assert counts == count_by_subject(valid)
    assert metric(worker, "insights_events_valid_total") == len(valid) + len(flushers)
    assert metric(worker, "insights_dead_letters_total") == len(bad)

    # The same process throughout, healthy and ready.
    watch.assert_healthy()
    assert worker.http("/healthz")[0] == 200
    assert worker.http("/readyz")[0] == 200
    reasons = Counter(letter.reason.value for letter in letters)
    kinds = Counter(m.kind for m in messages)
    print(  # noqa: T201
        f"\npoison: {len(messages)} messages fuzzed ({len(poison)} by hypothesis, "
        f"{sum(1 for m in messages if m.headers)} with garbage headers), "
        f"{sum(len(m.value or b'') for m in messages) / 1e6:.1f} MB; "
        f"dead letters by reason {dict(sorted(reasons.items()))}; "
        f"valid counted {len(valid)} ({len(valid) - VALID} drawn by hypothesis) of "
        f"{len(subjects)} subjects; classes {dict(sorted(kinds.items()))}; "
        f"drawn in {drawn_s:.1f}s, generated in {made_s - drawn_s:.1f}s, "
        f"sent by {sent_s:.1f}s, all in {time.monotonic() - began:.1f}s"
    )
    assert worker.stop() == 0


def final_counts(records: list[Any]) -> dict[str, int]:
    """Per subject, the count of its final record(s) (the flush metric left out)."""
    counts: dict[str, int] = {}
    for record in records:
        value = json.loads(record.value)
        if value["final"] and value["metric"] != FLUSH_METRIC and value["scope"] == "subject":
            counts[value["subject_id"]] = counts.get(value["subject_id"], 0) + value["count"]
    return counts


def count_by_subject(valid: list[Message]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in valid:
        subject = message.subject or ""
        counts[subject] = counts.get(subject, 0) + 1
    return counts
