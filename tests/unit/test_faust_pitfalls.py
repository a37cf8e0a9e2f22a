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
from faust.types import TP

from streams.faust.table_writes import writing_partition


@pytest.fixture
def app() -> faust.App:
    return faust.App("pin-test", broker="kafka://127.0.0.1:1", autodiscover=False)


def _record_changelog(
    monkeypatch: pytest.MonkeyPatch, table: Any, delivery: Any
) -> list[tuple[Any, ...]]:
    """Replace the table's changelog send: record (partition, key, value), answer
    `delivery(key)`."""
    sent: list[tuple[Any, ...]] = []

    def record(partition: int, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append((partition, key, value))
        return delivery(key)

    monkeypatch.setattr(table, "send_changelog", record)
    return sent


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
    delivery = SimpleNamespace(message=SimpleNamespace(partition=0))
    sent = _record_changelog(monkeypatch, table, lambda key: delivery)
    monkeypatch.setattr(table, "_verify_source_topic_partitions", lambda topic: None)
    with writing_partition(app, "keyed", 3):
        table[b"k"] = b"v"
    assert sent == [(3, b"k", b"v")]
    assert table.data[b"k"] == b"v"


def test_the_commit_flush_gives_up_on_a_stalled_buffer() -> None:
    # The at-least-once commit drains Faust's send_soon buffer (where table writes queue
    # their changelog records) with flush_atmost, which returns after 0.1 s without a send:
    # an offset can be committed while changelog records are still queued. `write_table`
    # hands back their futures so the agents await them before acknowledging.
    from faust.transport.producer import ProducerBuffer

    source = inspect.getsource(ProducerBuffer.flush_atmost)
    assert "timeout=0.1" in source
    assert "return flushed_messages" in source


def test_the_fetch_loop_call_the_fast_path_relies_on() -> None:
    # FastPathConsumer.wait_first short-cuts exactly this call of the drain loop; if Faust
    # changes it, the fast path no longer applies and this pin says so.
    from faust.transport.consumer import Consumer as TransportConsumer

    source = inspect.getsource(TransportConsumer)
    source = source[source.index("async def _drain_messages(") :]
    assert "await self.wait_first(\n" in source
    assert "callback(message), self.suspend_flow.wait()" in source
    assert inspect.getsource(TransportConsumer).count("self.wait_first(") == 1


def _fast_path_consumer(**attributes: Any) -> Any:
    """A `FastPathConsumer` with only what `wait_first` reads (mode's too)."""
    from streams.faust.fetch import FastPathConsumer

    consumer: Any = FastPathConsumer.__new__(FastPathConsumer)
    consumer.__dict__.update(attributes)
    return consumer


async def test_fast_path_awaits_the_callback_directly_and_falls_back_when_suspended() -> None:
    from streams.faust.fetch import FastPathConsumer

    events = {name: asyncio.Event() for name in ("suspend_flow", "_stopped", "_crashed")}
    consumer: Any = SimpleNamespace(**events)
    calls: list[str] = []

    async def callback() -> str:
        calls.append("callback")
        return "done"

    result = await FastPathConsumer.wait_first(consumer, callback(), events["suspend_flow"].wait())
    assert calls == ["callback"] and result.results == ["done"] and not result.stopped


def test_recovery_completion_clears_queues_after_resuming_stream_partitions() -> None:
    # Upstream order in on_recovery_completed: resume stream partitions -> await the seek
    # -> flow_control.resume() (which clears every stream queue). Records fetched during
    # the seek are cleared while the consumer's position has passed them.
    # OrderedRecoveryCompletion reorders it; this pin says when upstream changes.
    import faust.tables.recovery as recovery_module

    source = inspect.getsource(recovery_module)
    body = source[source.index("async def on_recovery_completed") :]
    body = body[: body.index("async def _build_highwaters")]
    order = [
        body.index("consumer.resume_partitions("),
        body.index("consumer.perform_seek()"),
        body.index("self.app.flow_control.resume()"),
        body.index("consumer.resume_flow()"),
    ]
    assert order == sorted(order)


async def test_recovery_fix_seeks_then_clears_then_resumes_stream_partitions() -> None:
    from streams.faust.rebalance import OrderedRecoveryCompletion

    calls: list[Any] = []
    stream_tp, changelog_tp = TP("input", 0), TP("app-state-changelog", 0)
    committed_tp = TP("input", 1)

    async def perform_seek() -> None:
        calls.append("seek")

    async def seek(tp: Any, offset: int) -> None:
        calls.append(("seek", tp, offset))

    async def on_rebalance_complete_send() -> None:
        calls.append("rebalance complete")

    async def maybe_start() -> None:
        calls.append("fetcher")

    async def wait(coro: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109  (mode's signature)
        return await coro

    consumer = SimpleNamespace(
        assignment=lambda: {stream_tp, committed_tp, changelog_tp},
        perform_seek=perform_seek,
        seek=seek,
        _committed_offset={committed_tp: 5},  # none yet for stream_tp (nor the changelog)
        resume_partitions=lambda tps: calls.append(("resume partitions", tps)),
        resume_flow=lambda: calls.append("resume flow"),
    )
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=7,
        conf=SimpleNamespace(broker_request_timeout=1.0),
        on_rebalance_complete=SimpleNamespace(send=on_rebalance_complete_send),
        flow_control=SimpleNamespace(resume=lambda: calls.append("clear queues")),
        _fetcher=SimpleNamespace(maybe_start=maybe_start),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: calls.append("rebalance end"),
    )
    completed = asyncio.Event()
    recovery: Any = SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a: None, warning=lambda *a: None),
        tables=SimpleNamespace(
            values=lambda: [],
            on_actives_ready=lambda: None,
            on_standbys_ready=lambda: None,
        ),
        completed=completed,
        _set_recovery_ended=lambda: None,
        _wait=wait,
        _is_changelog_tp=lambda tp: tp == changelog_tp,
    )
    await OrderedRecoveryCompletion.on_recovery_completed(recovery, generation_id=7)
    assert calls == [
        "rebalance complete",
        "seek",
        ("seek", stream_tp, 0),  # no committed offset: its start, not where it was
        "clear queues",
        ("resume partitions", {stream_tp, committed_tp}),
        "resume flow",
        "fetcher",
        "rebalance end",
    ]
    assert completed.is_set()


def test_assignment_activates_partitions_before_the_app_pauses_them() -> None:
    # Upstream: on_partitions_assigned makes every assigned partition active, then awaits
    # the app's callbacks, which pause them only later. PausedAssignmentConsumer pauses
    # them first; this pin says when upstream changes.
    import faust.app.base as app_module
    import faust.transport.consumer as consumer_module

    consumer_source = inspect.getsource(consumer_module)
    body = consumer_source[consumer_source.index("async def on_partitions_assigned(") :]
    assert body.index("self._set_active_tps(assigned)") < body.index("self._on_partitions_assigned")
    app_source = inspect.getsource(app_module)
    body = app_source[app_source.index("async def _on_partitions_assigned(") :]
    assert body.index("await T(self.topics.maybe_wait_for_subscriptions)()") < body.index(
        "T(consumer.pause_partitions)(assigned)"
    )


async def test_aiokafka_reads_an_empty_partition_set_as_every_partition() -> None:
    # Why the fetch gets a copy of Faust's live active set: emptied by a pause while
    # aiokafka waits, it would return records of every partition.
    from aiokafka.consumer.fetcher import Fetcher

    assert "if partitions and tp not in partitions:" in inspect.getsource(Fetcher.fetched_records)
    from streams.faust.rebalance import PausedAssignmentConsumer

    seen: list[Any] = []

    async def thread_getmany(partitions: Any, timeout: float) -> dict[Any, Any]:  # noqa: ASYNC109
        seen.append(partitions)
        return {}

    live = {("input", 0)}
    consumer: Any = PausedAssignmentConsumer.__new__(PausedAssignmentConsumer)
    consumer.__dict__.update(_thread=SimpleNamespace(getmany=thread_getmany))
    assert await consumer._getmany(live, 1.0) == {}
    assert seen == [live] and seen[0] is not live


async def test_transactional_highwaters_come_from_list_offsets() -> None:
    # Upstream reads the cached last stable offset (None until the partition is fetched)
    # under exactly_once; the fix asks the broker instead.
    import faust.transport.drivers.aiokafka as driver_module

    source = inspect.getsource(driver_module)
    body = source[source.index("async def _highwaters(") :]
    body = body[: body.index("def _ensure_consumer(")]
    assert "consumer.last_stable_offset(tp)" in body

    from streams.faust.highwaters import ListOffsetsHighwaters

    asked: list[Any] = []

    async def end_offsets(partitions: list[Any]) -> dict[Any, int]:
        asked.append(partitions)
        return {tp: 42 for tp in partitions}

    fetched: list[Any] = []

    async def send(node: int, request: Any) -> Any:
        # A broker whose ListOffsets lags its log (Tansu): the fetch of offset 41 reports
        # high watermark 50 and last stable offset 48.
        fetched.append((node, request.topics))
        return SimpleNamespace(API_VERSION=11, topics=[("app-state-changelog", [(3, 0, 50, 48)])])

    client = SimpleNamespace(cluster=SimpleNamespace(leader_for_partition=lambda tp: 7), send=send)
    aiokafka_consumer = SimpleNamespace(
        end_offsets=end_offsets, _client=client, _fetcher=SimpleNamespace(_isolation_level=1)
    )
    thread: Any = SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer)
    tp = TP("app-state-changelog", 3)
    assert await ListOffsetsHighwaters._highwaters(thread, [tp]) == {tp: 48}
    assert asked == [[tp]]
    assert fetched == [(7, [("app-state-changelog", [(3, 41, 1 << 20)])])]


@pytest.fixture
def recovery_asyncio(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`asyncio` as Faust's recovery module sees it with our poll patch, polling every
    50 ms, no recovery started yet."""
    import faust.tables.recovery as recovery_module

    from streams.faust import recovery

    recovery.install_recovery_poll()
    monkeypatch.setattr(recovery, "_RECOVERY_IDLE_POLL_S", 0.05)
    monkeypatch.setattr(recovery, "_recovery_started_at", [float("-inf")])
    return vars(recovery_module)["asyncio"]


async def test_recovery_polls_its_changelog_queue_every_second(recovery_asyncio: Any) -> None:
    # Faust's recovery ends an exactly_once changelog (which ends in a transaction marker)
    # only after two empty polls of its queue; each poll waited 5 s.
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(7)
    assert await recovery_asyncio.wait_for(queue.get(), timeout=5.0) == 7
    assert await recovery_asyncio.wait_for(asyncio.sleep(0, 8), timeout=0.5) == 8
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await recovery_asyncio.wait_for(queue.get(), timeout=5.0)
    assert 0.05 <= time.monotonic() - started < 1.0  # the capped poll, not Faust's 5 s
    assert recovery_asyncio.Event is asyncio.Event  # the rest is asyncio's own


async def test_a_queued_changelog_record_is_taken_without_a_poll(
    recovery_asyncio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust polls its changelog queue once per record; a record already there is returned
    # without a task (and its asyncio.wait and timers).
    loop = asyncio.get_running_loop()
    tasks: list[Any] = []
    create_task = loop.create_task

    def counting_create_task(coro: Any, **kwargs: Any) -> Any:
        tasks.append(coro)
        return create_task(coro, **kwargs)

    monkeypatch.setattr(loop, "create_task", counting_create_task)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for record in (1, 2, 3):
        queue.put_nowait(record)
    got = [await recovery_asyncio.wait_for(queue.get(), timeout=5.0) for _ in range(3)]
    assert got == [1, 2, 3]
    assert tasks == []
    # One that has to wait is polled in a task; on timeout its getter is cancelled, so a
    # record put later is not handed to it (lost) but stays in the queue.
    with pytest.raises(TimeoutError):
        await recovery_asyncio.wait_for(queue.get(), timeout=5.0)
    assert len(tasks) == 1
    queue.put_nowait(4)
    await asyncio.sleep(0)
    assert queue.get_nowait() == 4


async def test_no_poll_of_a_new_recovery_is_empty_before_two_polls_time(
    recovery_asyncio: Any,
) -> None:
    # Faust's count of empty polls survives from one recovery to the next: the first
    # empty poll of a new recovery must not come before two polls' time, or recovery ends
    # while the changelog's records are still on their way.
    from streams.faust.recovery import IdlePollRecovery

    recovery: Any = IdlePollRecovery.__new__(IdlePollRecovery)
    recovery.__dict__.update(
        in_recovery=False,
        app=SimpleNamespace(in_recovery=False),
        _active_events_received_at={},
        _standby_events_received_at={},
        _processing_times=[],
    )
    recovery._set_recovery_started()
    started = time.monotonic()
    queue: asyncio.Queue[int] = asyncio.Queue()
    with pytest.raises(TimeoutError):
        await recovery_asyncio.wait_for(queue.get(), timeout=5.0)
    assert time.monotonic() - started >= 2 * 0.05
    assert recovery.in_recovery  # Faust's own bookkeeping ran
    # A record arriving meanwhile is returned as soon as it comes.
    recovery._set_recovery_started()
    asyncio.get_running_loop().call_later(0.02, queue.put_nowait, 9)
    assert await recovery_asyncio.wait_for(queue.get(), timeout=5.0) == 9


def test_faust_counts_empty_recovery_polls_across_recoveries() -> None:
    # The reason for the settle time above: the count is a local of the changelog loop,
    # reset only by a record, and two empty polls end an exactly_once recovery.
    from faust.tables.recovery import Recovery

    source = inspect.getsource(Recovery._slurp_changelogs.fun)  # a mode ServiceTask
    assert source.count("timeout_count = 0") == 2  # before the loop, and on each record
    assert "timeout_count > 1" in source


async def test_the_worker_consumer_fetch_wait_is_ours_not_faust_s_1500_ms() -> None:
    from streams.faust import SCHEME, install
    from streams.faust.fetch import set_fetch_max_wait

    install()
    ours = faust.App("pin-fetch-wait", broker=f"{SCHEME}://127.0.0.1:1", autodiscover=False)
    set_fetch_max_wait(ours, 100)
    untouched = faust.App("pin-fetch-wait-2", broker="kafka://127.0.0.1:1", autodiscover=False)

    def created(app: faust.App) -> Any:
        return app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]

    consumers = [created(ours), created(untouched)]
    try:
        assert [c._fetch_max_wait_ms for c in consumers] == [100, 1500]  # 1500: Faust's own
    finally:
        for consumer in consumers:
            await consumer.stop()
        for app in (ours, untouched):  # never started: their threads' loops are still open
            app.consumer._thread.thread_loop.close()  # type: ignore[attr-defined]


async def test_fast_path_cancels_a_delivery_that_waits_through_a_suspension() -> None:
    # A delivery that has to wait (a full stream queue) must not outlive a rebalance: it
    # would land after the seek to committed offsets, and the drain loop would then take
    # its stale offset as read and drop the records the seek brought back.
    events = {name: asyncio.Event() for name in ("suspend_flow", "_stopped", "_crashed")}
    consumer = _fast_path_consumer(_loop=asyncio.get_running_loop(), **events)
    space = asyncio.Event()
    calls: list[str] = []

    async def deliver() -> str:
        calls.append("started")
        await space.wait()
        calls.append("delivered")
        return "done"

    waiting = asyncio.ensure_future(consumer.wait_first(deliver(), events["suspend_flow"].wait()))
    await asyncio.sleep(0.01)
    assert calls == ["started"] and not waiting.done()
    events["suspend_flow"].set()  # a rebalance begins
    result = await asyncio.wait_for(waiting, timeout=5)
    space.set()  # the queue has room again (the flow resumed)
    await asyncio.sleep(0.01)
    assert calls == ["started"]  # cancelled: never delivered
    assert result.results == [True] and not result.stopped  # the suspension won


async def test_fast_path_finishes_a_delivery_that_waits_while_the_flow_runs() -> None:
    events = {name: asyncio.Event() for name in ("suspend_flow", "_stopped", "_crashed")}
    consumer = _fast_path_consumer(_loop=asyncio.get_running_loop(), **events)
    space = asyncio.Event()

    async def deliver() -> str:
        await space.wait()
        await asyncio.sleep(0)
        return "done"

    waiting = asyncio.ensure_future(consumer.wait_first(deliver(), events["suspend_flow"].wait()))
    await asyncio.sleep(0.01)
    space.set()
    result = await asyncio.wait_for(waiting, timeout=5)
    assert result.results == ["done"] and not result.stopped


async def test_the_producer_batches_and_faust_reads_no_variables_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # Faust reads each of its settings from a same-named variable, over what the app
    # passes: Kubernetes sets `<SERVICE>_PORT=tcp://...` for every service, so a Service
    # named `web` crashed the worker at start. Only INSIGHTS_* configure it.
    from streams.app import create_app
    from streams.runtime.settings import load_settings

    monkeypatch.setenv("WEB_PORT", "tcp://10.0.0.1:80")
    monkeypatch.setenv("PRODUCER_LINGER", "0.5")
    monkeypatch.setenv("PROCESSING_GUARANTEE", "exactly_once")
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "INSIGHTS_DATA_DIR": str(tmp_path),
            "INSIGHTS_PRODUCER_LINGER": "20ms",
            "INSIGHTS_PRODUCER_BATCH_SIZE": "262144",
        }
    )
    app: Any = create_app(settings).app
    assert (app.conf.web_port, app.conf.processing_guarantee.value) == (6066, "at_least_once")
    producer = app.producer._new_producer()  # what Faust builds, transactional ones too
    try:
        accumulator = producer._message_accumulator
        assert (accumulator._linger_time, accumulator._batch_size) == (0.02, 262144)
    finally:
        await producer.stop()
