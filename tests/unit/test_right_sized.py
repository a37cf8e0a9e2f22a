"""Bytes kept long are right-sized: orjson's `dumps` output can hold a 4 KiB buffer."""

from __future__ import annotations

import tracemalloc

import faust
import orjson
import pytest

from models.codec import right_sized
from streams.faust_compat import write_table


def traced_bytes(make: object) -> int:
    """Bytes traced for what `make()` returns while it is alive."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept
    return after - before


def test_right_sized_values_occupy_about_their_length() -> None:
    values = [orjson.dumps([i, "state", [1.5, 2.5]]) for i in range(2000)]
    length = sum(len(v) for v in values)

    used = traced_bytes(lambda: [right_sized(v) for v in values])

    assert [right_sized(v) for v in values] == values
    assert used <= length + 2000 * 64 + 32_768  # object headers and the list, not 4 KiB each


def test_write_table_keeps_right_sized_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    app = faust.App("pin-right-sized", broker="kafka://127.0.0.1:1", autodiscover=False)
    table = app.Table("pin", key_type=bytes, value_type=bytes)
    sent: list[bytes] = []
    monkeypatch.setattr(table, "send_changelog", lambda p, k, v, *a, **kw: sent.append(v))
    value = orjson.dumps({"count": 3})

    write_table(app, table, "keyed", 0, {b"k": value})

    assert table.data[b"k"] == value
    assert table.data[b"k"] is not value  # the kept copy, not orjson's buffer
    assert sent == [value]
