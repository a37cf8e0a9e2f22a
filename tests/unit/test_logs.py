"""Log pipeline: redaction and the repeat filter for aiokafka's retry noise."""

from __future__ import annotations

import logging

from streams.runtime.logs import RepeatFilter, redact, register_secrets


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, None, None)


def test_repeats_pass_once_per_window_and_report_what_was_dropped() -> None:
    repeats = RepeatFilter(window_s=60)
    results = [repeats.filter(_record("Unable connect to %r")) for _ in range(750)]
    assert results.count(True) == 1
    assert repeats.filter(_record("another message")) is True
    repeats.window_s = 0
    again = _record("Unable connect to %r")
    assert repeats.filter(again) is True
    assert getattr(again, "suppressed", None) == 749


def test_redaction_masks_secrets_and_observation_contents() -> None:
    register_secrets(["hunter2-secret"])
    event = redact(None, "info", {"event": "x hunter2-secret y", "value": 1.5, "attributes": {}})
    assert event == {"event": "x [REDACTED] y", "value": "[REDACTED]", "attributes": "[REDACTED]"}
    debug = redact(None, "debug", {"event": "e", "value": 1.5})
    assert debug["value"] == 1.5
