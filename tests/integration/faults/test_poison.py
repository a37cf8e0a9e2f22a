"""Poison input: thousands of hypothesis-drawn bad messages (random bytes, deep and wide JSON,
huge strings around the size limit, wrong types per field, unicode edge cases, NaN and
Infinity, numeric strings, booleans, naive timestamps), interleaved with known valid
observations. The worker never stops, every bad message is exactly one dead letter (matched
by its source partition and offset, original bytes preserved), and every valid observation is
counted exactly once: in `/metrics` and in the final window records."""

from __future__ import annotations

import base64
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models import DeadLetter, DecodeError, decode_observation, loads_model, to_epoch_ms
from tests.integration.faults.conftest import PARTITIONS, metric, poll, read_all, wait_drained
from tests.support.broker import Broker
from tests.support.kafka_io import create_topic, produce
from tests.support.scenario import BASE_MS, FLUSH_METRIC, encode
from tests.support.truth import Event
from tests.support.worker import TopicNames, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_BYTES = 65_536  # INSIGHTS_MAX_MESSAGE_BYTES, set explicitly below
WINDOW_MS = 3_600_000  # one tumbling hour: every valid observation of a subject in one window
WINDOW_START = BASE_MS  # 2026-11-27T10:00:00Z, a multiple of an hour
VALID = 800  # known valid observations
BATCHES = 80  # hypothesis examples drawn, each a list of poison messages
REASONS = {"undecodable", "invalid", "too_large", "unsupported_version"}  # never `late` here
WORKER_ENV = {
    "INSIGHTS_TOPIC_PARTITIONS": str(PARTITIONS),
    "INSIGHTS_WINDOWS": "tumbling:3600s",
    "INSIGHTS_GRACE": "30m",
    "INSIGHTS_IDLE_TIMEOUT": "1h",
    "INSIGHTS_EMIT": "final",
    "INSIGHTS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
}

# -- what a poison message looks like -------------------------------------------------------

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


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


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
    document = {f"k{i}": leaf for i in range(width)}
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
    document = base_observation()
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


poison_value = st.one_of(
    st.binary(max_size=300),
    edge_text.map(str.encode),
    json_value.map(dumps),
    deep_json(),
    wide_json(),
    huge(),
    wrong_types(),
    st.sampled_from([b"", b"null", b"{}", b"[]", b"NaN", b"{", b'{"a":', b"\xef\xbb\xbf{}"]),
    st.none(),  # a tombstone
)
poison_key = st.one_of(st.none(), st.binary(max_size=40), edge_text.map(str.encode))


def sendable(pair: tuple[bytes | None, bytes | None]) -> tuple[bytes | None, bytes | None]:
    """Kafka needs a key or a value: a tombstone gets a key."""
    key, value = pair
    return (b"tombstone" if key is None and value is None else key), value


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    reason: str | None  # the codec's verdict; None: a valid observation
    event_id: str | None = None
    subject: str | None = None


def classify(key: bytes | None, value: bytes | None) -> Message:
    try:
        observation = decode_observation(value, max_bytes=MAX_BYTES)
    except DecodeError as exc:
        return Message(key, value, str(exc.reason))
    return Message(key, value, None, observation.event_id, observation.subject_id)


def draw_poison() -> list[Message]:
    """BATCHES lists of poison (key, value) drawn by hypothesis, derandomized: the same
    corpus every run. Messages the codec accepts are kept as valid ones when they fall in the
    test's window, so nothing valid can move a watermark past it."""
    drawn: list[tuple[bytes | None, bytes | None]] = []

    @settings(
        max_examples=BATCHES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(st.tuples(poison_key, poison_value).map(sendable), min_size=40, max_size=120))
    def collect(batch: list[tuple[bytes | None, bytes | None]]) -> None:
        drawn.extend(batch)

    collect()
    kept = []
    for key, value in drawn:
        message = classify(key, value)
        if message.reason is None:
            observed = to_epoch_ms(decode_observation(value, max_bytes=MAX_BYTES).observed_at)
            if not WINDOW_START <= observed < WINDOW_START + WINDOW_MS - 600_000:
                continue
        kept.append(message)
    return kept


def good_observations() -> list[Message]:
    """Unique event_ids, distinct subjects, no groups; all in the first half of the window."""
    rng = random.Random(7)
    out = []
    for i in range(VALID):
        event = Event(
            f"good-{i}",
            "o1",
            f"good-s-{i}",
            "temp",
            round(rng.gauss(50, 12), 4),
            WINDOW_START + 60_000 + i * 1_000,
        )
        out.append(
            Message(
                event.subject_id.encode(), encode(event), None, event.event_id, event.subject_id
            )
        )
    return out


async def send_recording(
    bootstrap: str, topic: str, messages: list[Message]
) -> dict[tuple[int, int], Message]:
    """Send in order; each message by the (partition, offset) the broker gave it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=m.key, value=m.value) for m in messages]
        placed = {}
        for message, future in zip(messages, futures, strict=True):
            meta = await future
            placed[(meta.partition, meta.offset)] = message
    finally:
        await producer.stop()
    return placed


def original(text: str | None, encoding: str | None) -> bytes | None:
    if text is None:
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode()


# -- the test --------------------------------------------------------------------------------


async def test_poison_input_at_volume(
    broker: Broker, names: TopicNames, start_worker: Callable[..., WorkerProcess]
) -> None:
    began = time.monotonic()
    poison = draw_poison()
    drawn_s = time.monotonic() - began
    good = good_observations()
    rng = random.Random(11)
    messages = poison + good
    rng.shuffle(messages)
    bad = [m for m in messages if m.reason is not None]
    valid = [m for m in messages if m.reason is None]
    assert len({m.event_id for m in valid}) == len(valid), "valid event_ids must be unique"
    assert len(bad) >= 3000, len(bad)

    bootstrap = broker.bootstrap_servers
    await create_topic(bootstrap, names.input, PARTITIONS)
    worker = start_worker(**WORKER_ENV)
    worker.wait_ready()
    placed = await send_recording(bootstrap, names.input, messages)

    # Every valid observation has been accepted (the counter), then the flushers close the
    # window of every subject: one event two hours later per keyed partition's subjects.
    await poll(
        lambda: metric(worker, "insights_events_valid_total") >= len(valid),
        90.0,
        f"{len(valid)} valid events counted",
        period_s=0.5,
    )
    # Counted at ingest is not yet folded in: a group record still crossing the keyed
    # topic would land behind its partition's flusher and be late.
    await wait_drained(broker, names)
    subjects = sorted({m.subject for m in valid if m.subject is not None})
    far = WINDOW_START + 2 * WINDOW_MS
    flushers = [
        (s.encode(), encode(Event(f"flush-{i}", "o-flush", s, FLUSH_METRIC, 0.0, far)))
        for i, s in enumerate(subjects)
    ]
    await produce(bootstrap, names.input, flushers)
    # and one on every partition: each source's watermark passes the window too
    for partition in range(PARTITIONS):
        event = Event(
            f"flush-src-{partition}", "o-flush", f"flush-src-{partition}", FLUSH_METRIC, 0.0, far
        )
        await produce(bootstrap, names.input, [(None, encode(event))], partition=partition)
        flushers.append((None, encode(event)))

    # Dead letters: exactly one per poison message, by source position.
    async def all_dead() -> bool:
        return metric(worker, "insights_dead_letters_total") >= len(bad)

    await poll(all_dead, 90.0, f"{len(bad)} dead letters", period_s=0.5)
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
        f"unexpected {len(set(by_position) - expected_positions)}"
    )
    for position, letter in by_position.items():
        message = placed[position]
        assert letter.topic == names.input
        assert letter.reason.value in REASONS, (position, letter.reason)
        assert letter.reason.value == message.reason, (position, letter.reason, message.reason)
        assert letter.errors, position
        assert original(letter.value, letter.encoding) == message.value, position
        assert original(letter.key, letter.key_encoding) == message.key, position

    # Every valid observation counted exactly once: the counter and the window finals.
    rolling: list[Any] = []

    async def finals_complete() -> bool:
        nonlocal rolling
        rolling = await read_all(bootstrap, names.rolling)
        return set(final_counts(rolling)) >= set(count_by_subject(valid))

    await poll(finals_complete, 90.0, "finals of every subject", period_s=1.0)
    counts = final_counts(rolling)
    assert sum(counts.values()) == len(valid)
    assert counts == count_by_subject(valid)
    assert metric(worker, "insights_events_valid_total") == len(valid) + len(flushers)
    assert metric(worker, "insights_dead_letters_total") == len(bad)

    assert worker.process.poll() is None, worker.log_tail()
    status, _ = worker.http("/healthz")
    assert status == 200
    mix: dict[str, int] = {}
    for m in bad:
        mix[str(m.reason)] = mix.get(str(m.reason), 0) + 1
    print(  # noqa: T201
        f"\npoison: {len(bad)} bad {mix}, {len(valid)} valid "
        f"({len(valid) - len(good)} drawn by hypothesis), "
        f"{sum(len(m.value or b'') for m in messages) / 1e6:.1f} MB, drawn in {drawn_s:.1f}s, "
        f"all in {time.monotonic() - began:.1f}s"
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
