"""`decode_keyed`'s fast path against the model: for any document, the same keyed records or
the same dead-letter reason and errors as `decode_observation` + `for_scopes`."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import DecodeError, decode_observation
from models.fast_decode import _fast, decode_keyed
from models.keyed import KeyedObservation
from streams.cli.generator import GeneratorConfig, ObservationGenerator

MAX_BYTES = 64 * 1024


def slow(raw: bytes | None) -> list[KeyedObservation] | tuple[str, tuple[Any, ...]]:
    """The model's answer: keyed records, or (reason, errors)."""
    try:
        observation = decode_observation(raw, max_bytes=MAX_BYTES)
    except DecodeError as exc:
        return (exc.reason.value, exc.errors)
    return KeyedObservation.for_scopes(observation, 3, 41, 1_700_000_000_000)


def fast(raw: bytes | None) -> list[KeyedObservation] | tuple[str, tuple[Any, ...]]:
    try:
        return decode_keyed(
            raw, max_bytes=MAX_BYTES, partition=3, offset=41, timestamp_ms=1_700_000_000_000
        )
    except DecodeError as exc:
        return (exc.reason.value, exc.errors)


def strings(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(
            ["", "temp", "cpu.load:1", "a b", "temp\n", "é", "s\ud800", "x" * (max_size + 1)]
        ),
    )


SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
OBSERVED_AT: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(
        [
            "2026-11-27T12:00:03.120Z",
            "2026-11-27T12:00:03.123456789+02:00",
            "2026-11-27t12:00:03z",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2026-11-27T12:00:03",
            "2026-13-27T12:00:03Z",
            "0001-01-01T00:00:00Z",
        ]
    ),
    SCALARS,
)
ATTRIBUTES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=34),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=3),
    SCALARS,
)


VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.text(min_size=1, max_size=128),
    "observer_id": st.text(min_size=1, max_size=128),
    "subject_id": st.text(min_size=1, max_size=256),
    "metric": st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True),
    "value": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53) + 1, 2**53 - 1)
    ),
    "observed_at": st.one_of(
        st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
        st.sampled_from(["2026-11-27T12:00:03.120Z", "2026-11-27T12:00:03.123456789+02:00"]),
    ),
}
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "group_id": st.one_of(st.none(), st.text(min_size=1, max_size=256)),
    "attributes": st.one_of(
        st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=32)
    ),
    "schema_version": st.just(1),
}
WILD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_id": strings(128),
    "observer_id": strings(128),
    "subject_id": strings(256),
    "metric": strings(128),
    "value": st.one_of(st.floats(), st.integers(-(2**60), 2**60)),
    "observed_at": OBSERVED_AT,
    "group_id": strings(256),
    "attributes": ATTRIBUTES,
    "schema_version": st.sampled_from([1, 2, 1.0, True, "1"]),
    "extra": SCALARS,
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid observation (about half the time) or one with a few fields broken, missing
    or wild."""
    doc: dict[str, Any] = {name: draw(strategy) for name, strategy in VALID_FIELDS.items()}
    for name, strategy in OPTIONAL_FIELDS.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(sorted(WILD_FIELDS)))
        if draw(st.integers(0, 4)) == 0:
            doc.pop(name, None)
        else:
            doc[name] = draw(st.one_of(WILD_FIELDS[name], SCALARS))
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # ints beyond 64 bits: the stdlib writes them
        return json.dumps(doc).encode()


@settings(max_examples=3000, deadline=None)
@given(documents())
def test_the_fast_path_answers_as_the_model_does(doc: dict[str, Any]) -> None:
    raw = encode(doc)
    assert fast(raw) == slow(raw)


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"{", b"[1]", b"null", b'"x"', b"x" * (MAX_BYTES + 1), b'{"value": NaN}'],
)
def test_messages_that_are_no_object_get_the_models_reason(raw: bytes | None) -> None:
    assert fast(raw) == slow(raw)


def test_the_generators_events_take_the_fast_path() -> None:
    config = GeneratorConfig(
        start_ms=1_795_000_000_000, seed=3, subjects=20, groups=3, invalid_share=0.1
    )
    events = list(ObservationGenerator(config, count=500))
    fast_taken = 0
    for event in events:
        try:
            doc = orjson.loads(event.value)
        except orjson.JSONDecodeError:
            continue
        records = _fast(doc, 3, 41, 1_700_000_000_000) if isinstance(doc, dict) else None
        if records is not None:
            fast_taken += 1
            assert records == slow(event.value)
    # The generator also writes invalid events on purpose; every valid one is fast.
    valid = sum(1 for event in events if isinstance(slow(event.value), list))
    assert fast_taken == valid > 400
