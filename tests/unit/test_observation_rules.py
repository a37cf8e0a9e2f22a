"""Every input rule of the contract (DESIGN.md, `observations`), valid and invalid, with the
exact dead-letter reason each broken rule yields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import DeadLetterReason, DecodeError, Observation, decode_observation

MAX = 65_536
BASE: dict[str, Any] = {
    "event_id": "evt-1",
    "observer_id": "observer-a",
    "subject_id": "s-17",
    "metric": "temp",
    "value": 21.4,
    "observed_at": "2026-11-27T12:00:03.120Z",
}
MISSING = object()


def encode(**changes: Any) -> bytes:
    record = dict(BASE)
    for key, value in changes.items():
        if value is MISSING:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record).encode()


def accepted(raw: bytes) -> Observation:
    return decode_observation(raw, max_bytes=MAX)


def rejected(raw: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_observation(raw, max_bytes=MAX)
    return info.value


def assert_invalid(raw: bytes, field: str) -> None:
    error = rejected(raw)
    assert error.reason is DeadLetterReason.INVALID
    assert field in [e.field for e in error.errors], error.errors


@pytest.mark.parametrize(
    ("field", "max_len"), [("event_id", 128), ("observer_id", 128), ("subject_id", 256)]
)
def test_identifier_lengths(field: str, max_len: int) -> None:
    assert getattr(accepted(encode(**{field: "x"})), field) == "x"
    assert getattr(accepted(encode(**{field: "x" * max_len})), field) == "x" * max_len
    assert_invalid(encode(**{field: ""}), field)
    assert_invalid(encode(**{field: "x" * (max_len + 1)}), field)
    assert_invalid(encode(**{field: MISSING}), field)
    assert_invalid(encode(**{field: 17}), field)


def test_metric_charset_and_length() -> None:
    assert accepted(encode(metric="cpu.load:1m_avg-X9")).metric == "cpu.load:1m_avg-X9"
    assert accepted(encode(metric="m" * 128)).metric == "m" * 128
    for bad in ("has space", "température", "a/b", "", "m" * 129):
        assert_invalid(encode(metric=bad), "metric")
    assert_invalid(encode(metric=MISSING), "metric")


def test_value_finite_number() -> None:
    assert accepted(encode(value=3)).value == 3.0
    assert accepted(encode(value=-1.25e-300)).value == -1.25e-300
    for bad in (True, False, "21.4", None, [1], {"v": 1}):
        assert_invalid(encode(value=bad), "value")
    assert_invalid(encode(value=MISSING), "value")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_value_non_finite_is_invalid_not_undecodable(literal: str) -> None:
    raw = encode(value=0).replace(b'"value": 0', f'"value": {literal}'.encode())
    assert_invalid(raw, "value")


def test_observed_at_rfc3339_with_offset() -> None:
    assert accepted(encode(observed_at="2026-11-27T12:00:03.120Z")).observed_at == datetime(
        2026, 11, 27, 12, 0, 3, 120_000, tzinfo=UTC
    )
    shifted = accepted(encode(observed_at="2026-11-27T14:00:00+02:00")).observed_at
    assert shifted == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert shifted.utcoffset() == timedelta(0)
    nanos = accepted(encode(observed_at="2026-11-27T12:00:00.123456789Z")).observed_at
    assert nanos.microsecond == 123_456
    for bad in (
        "2026-11-27T12:00:00",  # naive
        "2026-11-27",  # date only
        "27/11/2026 12:00Z",
        "1764244800000",  # epoch as a string
        "2026-13-01T00:00:00Z",  # no month 13
        "",
    ):
        assert_invalid(encode(observed_at=bad), "observed_at")


def test_observed_at_epoch_milliseconds() -> None:
    ms = 1_795_780_803_120  # 2026-11-27T12:00:03.120Z
    assert accepted(encode(observed_at=ms)).observed_at == datetime(
        2026, 11, 27, 12, 0, 3, 120_000, tzinfo=UTC
    )
    assert accepted(encode(observed_at=ms)).observed_ms == ms
    for bad in (1_795_780_803.12, True, None, 10**20):
        assert_invalid(encode(observed_at=bad), "observed_at")
    assert_invalid(encode(observed_at=MISSING), "observed_at")


def test_group_id_optional_string() -> None:
    assert accepted(encode()).group_id is None
    assert accepted(encode(group_id=None)).group_id is None
    assert accepted(encode(group_id="site-7")).group_id == "site-7"
    for bad in ("", 7, ["a"]):
        assert_invalid(encode(group_id=bad), "group_id")


def test_attributes_at_most_32_string_pairs() -> None:
    thirty_two = {f"k{i}": f"v{i}" for i in range(32)}
    assert accepted(encode(attributes=thirty_two)).attributes == thirty_two
    assert accepted(encode(attributes=None)).attributes is None
    assert_invalid(encode(attributes={f"k{i}": "v" for i in range(33)}), "attributes")
    assert_invalid(encode(attributes={"k": 1}), "attributes.k")
    assert_invalid(encode(attributes=["k", "v"]), "attributes")


def test_schema_version() -> None:
    assert accepted(encode(schema_version=1)).schema_version == 1
    assert accepted(encode()).schema_version == 1
    for unknown in (0, 2, 99):
        error = rejected(encode(schema_version=unknown))
        assert error.reason is DeadLetterReason.UNSUPPORTED_VERSION
        assert error.errors[0].field == "schema_version"
    assert_invalid(encode(schema_version="1"), "schema_version")


def test_unknown_fields_are_invalid() -> None:
    assert_invalid(encode(observedAt="2026-11-27T12:00:00Z"), "observedAt")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"not json at all", DeadLetterReason.UNDECODABLE, id="text"),
        pytest.param(b"\xff\xfe\x00garbage", DeadLetterReason.UNDECODABLE, id="not-utf8"),
        pytest.param(b"", DeadLetterReason.UNDECODABLE, id="empty"),
        pytest.param(b'{"event_id": "e"', DeadLetterReason.UNDECODABLE, id="truncated"),
        pytest.param(b"[" * 5000 + b"]" * 5000, DeadLetterReason.UNDECODABLE, id="too-deep"),
        pytest.param(b"[1, 2]", DeadLetterReason.INVALID, id="array"),
        pytest.param(b'"a string"', DeadLetterReason.INVALID, id="string"),
        pytest.param(b"42", DeadLetterReason.INVALID, id="number"),
        pytest.param(b"null", DeadLetterReason.INVALID, id="null"),
    ],
)
def test_message_must_be_a_json_object(raw: bytes, reason: DeadLetterReason) -> None:
    assert rejected(raw).reason is reason


def test_tombstone_is_undecodable() -> None:
    with pytest.raises(DecodeError) as info:
        decode_observation(None, max_bytes=MAX)
    assert info.value.reason is DeadLetterReason.UNDECODABLE


def test_size_limit() -> None:
    padding = "x" * (MAX - len(encode(attributes={"pad": ""})))
    at_limit = encode(attributes={"pad": padding})
    assert len(at_limit) == MAX
    assert accepted(at_limit).attributes == {"pad": padding}
    over = encode(attributes={"pad": padding + "x"})
    error = rejected(over)
    assert error.reason is DeadLetterReason.TOO_LARGE
    assert str(MAX + 1) in error.errors[0].message
    assert rejected(b"{" + b" " * 1_048_576 + b"}").reason is DeadLetterReason.TOO_LARGE


def test_dead_letters_name_the_event_id_when_it_can_be_read() -> None:
    assert rejected(encode(value="x")).event_id == "evt-1"
    assert rejected(encode(schema_version=2)).event_id == "evt-1"
    assert rejected(encode(event_id=7, value="x")).event_id is None
    assert rejected(b"[1]").event_id is None


LONE = "s\ud800"  # valid JSON once escaped ("s\\ud800"), but no UTF-8 can carry it


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": LONE}, "event_id"),
        ({"observer_id": LONE}, "observer_id"),
        ({"subject_id": LONE}, "subject_id"),
        ({"group_id": LONE}, "group_id"),
        ({"attributes": {"site": LONE}}, "attributes"),
        ({"attributes": {LONE: "a"}}, "attributes"),
    ],
)
def test_a_lone_surrogate_in_any_string_field_is_invalid(
    changes: dict[str, Any], field: str
) -> None:
    raw = encode(**changes)
    assert b"\\ud800" in raw
    error = rejected(raw)
    assert error.reason is DeadLetterReason.INVALID
    assert any(e.field.startswith(field) for e in error.errors), error.errors


@pytest.mark.parametrize(
    "observed_at",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"],
)
def test_offsets_past_the_ends_of_the_date_range_are_invalid(observed_at: str) -> None:
    error = rejected(encode(observed_at=observed_at))
    assert error.reason is DeadLetterReason.INVALID
    assert [e.field for e in error.errors] == ["observed_at"]
    assert "out of range" in error.errors[0].message


def test_non_ascii_text_that_is_valid_unicode_is_accepted() -> None:
    observation = accepted(encode(subject_id="Zürich-☃", attributes={"ort": "Genève"}))
    assert observation.subject_id == "Zürich-☃"
