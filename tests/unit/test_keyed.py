"""The keyed hop's envelopes: bounded in size, lossless and in order."""

from __future__ import annotations

import orjson

from models.keyed import (
    ENVELOPE_MAX_BYTES,
    KeyedObservation,
    SourceReport,
    Traced,
    decode_envelope,
    encode_envelopes,
)


def record(i: int) -> KeyedObservation:
    subject = f"subject-{i % 97:03d}-" + "x" * 200
    return KeyedObservation(
        "subject", subject, f"event-{i:06d}-" + "e" * 100, "observer-01", subject, None,
        "temp", i / 7, 1_795_780_800_000 + i, {"site": "a"}, 3, i, 1_795_780_800_000,
    )  # fmt: skip


def test_a_large_batch_splits_into_envelopes_under_the_bound_losing_nothing() -> None:
    items = [(record(i), None if i % 2 else f"00-{i:032x}-{i:016x}-01") for i in range(6000)]
    whole = sum(len(e) for e in encode_envelopes(items, max_bytes=10**9))
    assert whole > 2 * ENVELOPE_MAX_BYTES  # the batch really needs splitting

    envelopes = encode_envelopes(items)

    assert len(envelopes) >= 3
    assert max(len(e) for e in envelopes) <= ENVELOPE_MAX_BYTES
    decoded = [item for envelope in envelopes for item in decode_envelope(envelope)[0]]
    assert decoded == items


def test_only_the_last_envelope_carries_the_source_report() -> None:
    """A report covers every record of the batch: a keyed partition must not see it before
    the last of them."""
    items = [(record(i), None) for i in range(6000)]
    report = SourceReport(3, 1_795_780_805_999, 12)
    envelopes = encode_envelopes(items, report)
    reports = [decode_envelope(envelope)[1] for envelope in envelopes]
    assert reports == [None] * (len(envelopes) - 1) + [report]


def test_a_control_envelope_has_no_records_and_bare_lists_no_report() -> None:
    report = SourceReport(0, None, 4, idle_at_ms=1_795_780_800_000)
    [control] = encode_envelopes([], report)
    assert decode_envelope(control) == ([], report)
    old = orjson.dumps([[*record(1).to_list(), None]])  # written before source reports
    assert decode_envelope(old) == ([(record(1), None)], None)


def test_a_small_batch_is_one_envelope_and_one_oversized_record_goes_alone() -> None:
    items: Traced = [(record(i), None) for i in range(3)]
    assert len(encode_envelopes(items)) == 1
    [alone] = encode_envelopes(items[:1], max_bytes=10)
    assert decode_envelope(alone) == (items[:1], None)
