"""Pins of the Faust behaviours our design works around (faust-streaming 0.15.x). When an
upgrade changes one of them, its test fails and says which workaround to revisit."""

from __future__ import annotations

import asyncio
import inspect
import time
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.tables.base import Collection

from streams.faust_compat import writing_partition


@pytest.fixture
def app() -> faust.App:
    return faust.App("pin-test", broker="kafka://127.0.0.1:1", autodiscover=False)


def test_windowed_cleanup_judges_staleness_by_wall_clock() -> None:
    # Faust deletes windows by time.time(), so windows of events stamped an hour ago are
    # "stale" the moment they are written. Our engine closes windows by event-time watermark.
    assert "time.time()" in inspect.getsource(Collection._del_old_keys)
    window = faust.TumblingWindow(60, expires=60)
    assert window.stale(time.time() - 3600, time.time())


def test_on_window_close_gets_only_the_raw_value() -> None:
    # The lookup that should gather a closed window's data never matches (keyed by range
    # end, looked up by range), so on_window_close sees no window data. Our finals carry
    # the window and every figure themselves.
    assert "(partition, window_range)" in inspect.getsource(Collection._del_old_keys)


def test_table_writes_outside_stream_iteration_raise(app: faust.App) -> None:
    table = app.Table("pin", key_type=bytes, value_type=bytes)
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table[b"k"] = b"v"


def test_writing_partition_routes_changelog_writes(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = app.Table("pin", key_type=bytes, value_type=bytes)
    sent: list[tuple[Any, ...]] = []

    def record(partition: int, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append((partition, key, value))

        class _Fut:
            class message:
                partition = 0

        return _Fut()

    monkeypatch.setattr(table, "send_changelog", record)
    monkeypatch.setattr(table, "_verify_source_topic_partitions", lambda topic: None)
    with writing_partition(app, "keyed", 3):
        table[b"k"] = b"v"
    assert sent == [(3, b"k", b"v")]
    assert table.data[b"k"] == b"v"


def test_the_fetch_loop_call_the_fast_path_relies_on() -> None:
    # install_fetch_fast_path short-cuts exactly this call of the drain loop; if Faust
    # changes it, the patch no longer applies and this pin says so.
    from faust.transport.consumer import Consumer as TransportConsumer

    source = inspect.getsource(TransportConsumer._drain_messages)
    assert "await self.wait_first(\n" in source
    assert "callback(message), self.suspend_flow.wait()" in source
    assert inspect.getsource(TransportConsumer).count("self.wait_first(") == 1


async def test_fast_path_awaits_the_callback_directly_and_falls_back_when_suspended() -> None:
    from faust.transport.consumer import Consumer as TransportConsumer

    from streams.faust_compat import install_fetch_fast_path

    assert install_fetch_fast_path()
    events = {name: asyncio.Event() for name in ("suspend_flow", "_stopped", "_crashed")}
    consumer: Any = SimpleNamespace(**events)
    calls: list[str] = []

    async def callback() -> str:
        calls.append("callback")
        return "done"

    result = await TransportConsumer.wait_first(consumer, callback(), events["suspend_flow"].wait())
    assert calls == ["callback"] and result.results == ["done"] and not result.stopped
