"""Ingest's per-message routing: an exception while handling one message's content is that
message's dead letter (`unprocessable`, naming the exception, never the value), and none of
its keyed records is filed; the next message is routed as usual."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import agents.ingest as ingest_module
from agents.ingest import Ingest
from models import DeadLetterReason, DecodeError
from models.keyed import Traced

VALUE = {
    "event_id": "e-1",
    "observer_id": "o1",
    "subject_id": "s-1",
    "group_id": "g-1",
    "metric": "temp",
    "value": 1.5,
    "observed_at": 1_795_780_800_000,
}


def message(offset: int, **changes: Any) -> SimpleNamespace:
    value = json.dumps({**VALUE, **changes}).encode()
    return SimpleNamespace(partition=0, offset=offset, timestamp=0, value=value, headers=())


def router() -> Ingest:
    ingest = Ingest.__new__(Ingest)
    ingest.app = SimpleNamespace()
    ingest.keyed_topic = "keyed"
    ingest.max_bytes = 65_536
    ingest.max_future_s = 600.0
    ingest.earliest_ms = -(2**62)
    return ingest


def test_a_failure_while_routing_is_an_unprocessable_dead_letter_and_files_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def key_partition(app: Any, topic: str, key: bytes) -> int:
        if key == b"group:g-1":
            raise RuntimeError("partitioner fault")
        return 0

    monkeypatch.setattr(ingest_module, "key_partition", key_partition)
    ingest, envelopes, marks = router(), dict[tuple[int, int], Traced](), dict[int, int]()

    failure = ingest._route(message(7), envelopes, None, None, 10**13, marks)

    assert isinstance(failure, DecodeError)
    assert failure.reason is DeadLetterReason.UNPROCESSABLE
    assert [(e.field, e.message) for e in failure.errors] == [
        ("", "RuntimeError: partitioner fault")
    ]
    assert envelopes == {} and marks == {}  # the subject record was not filed alone
    assert ingest._route(message(8, group_id=None), envelopes, None, None, 10**13, marks) is None
    assert [r.event_id for r, _ in envelopes[(0, 0)]] == ["e-1"]
    assert marks == {0: VALUE["observed_at"]}


def test_an_observed_at_beyond_the_bound_is_invalid_and_moves_no_mark() -> None:
    ingest, envelopes, marks = router(), dict[tuple[int, int], Traced](), dict[int, int]()
    failure = ingest._route(message(1), envelopes, None, None, 1_795_780_799_999, marks)
    assert isinstance(failure, DecodeError)
    assert failure.reason is DeadLetterReason.INVALID
    assert [e.field for e in failure.errors] == ["observed_at"]
    assert envelopes == {} and marks == {}
