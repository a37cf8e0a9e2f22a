"""The exactly_once commit fixes: commits between units of work, and every transaction
that sent records committed, also one without new offsets."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest

from streams.faust.commit_gate import CommitGate, commit_gate
from streams.faust.shutdown import BoundedWaitEmptyConsumer
from streams.faust.transactions import (
    GatedCommitConsumer,
    StaleProducerStoppingTransactionManager,
    TransactionalProducer,
    commit_sent_transactions,
)


async def test_a_commit_waits_for_running_work_and_holds_new_work_back() -> None:
    gate = CommitGate()
    log: list[str] = []
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with gate.work():
            log.append("first starts")
            first_running.set()
            await release_first.wait()
            log.append("first ends")

    async def commit() -> None:
        async with gate.commit():
            log.append("commit")

    async def second() -> None:
        async with gate.work():
            log.append("second starts")

    running = asyncio.create_task(first())
    await first_running.wait()
    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)  # the commit is now waiting for `first`
    arriving = asyncio.create_task(second())
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == ["first starts"]  # neither the commit nor new work got in
    release_first.set()
    await asyncio.gather(running, committing, arriving)
    assert log == ["first starts", "first ends", "commit", "second starts"]


async def test_a_closed_gate_holds_work_back_until_reopened() -> None:
    gate = CommitGate()
    started: list[str] = []

    async def unit() -> None:
        async with gate.work():
            started.append("unit")

    async with gate.commit():
        pass
    gate.close()  # the transactions ended (a rebalance or the shutdown)
    waiting = asyncio.create_task(unit())
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == []
    await gate.reopen()  # new transactions began
    await asyncio.wait_for(waiting, timeout=5)
    assert started == ["unit"]


async def test_units_of_work_run_side_by_side() -> None:
    gate = CommitGate()
    both_in = asyncio.Barrier(2)

    async def unit() -> None:
        async with gate.work():
            await asyncio.wait_for(both_in.wait(), timeout=5)

    await asyncio.gather(unit(), unit())


class _TransactionalProducer:
    def __init__(self, name: str, log: list[str], *, in_transaction: bool = False) -> None:
        self.name, self.log = name, log
        self._txn_manager = SimpleNamespace(is_in_transaction=lambda: in_transaction)

    async def commit_transaction(self) -> None:
        self.log.append(f"commit {self.name}")

    async def begin_transaction(self) -> None:
        self.log.append(f"begin {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.log.append(f"offsets {self.name} {sorted(offsets.values())}")

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _driver_producer(log: list[str], in_transaction: dict[str, bool]) -> Any:
    """Our aiokafka producer over fake transactional producers (by id)."""
    producer: Any = TransactionalProducer.__new__(TransactionalProducer)
    producer.__dict__.update(
        _transaction_producers={
            tid: _TransactionalProducer(tid, log, in_transaction=state)
            for tid, state in in_transaction.items()
        },
        _trn_locks=defaultdict(asyncio.Lock),
        _send_on_produce_message=lambda **kwargs: None,
        allow_headers=True,
        _ensure_producer=lambda: None,
    )
    return producer


async def test_a_transaction_that_only_sent_is_committed_once_after_the_offsets() -> None:
    log: list[str] = []
    producer = _driver_producer(log, {"g-1-0": True, "g-1-1": True})
    # Partition 0 sent (a batch) and has an acknowledged offset; partition 1 only sent
    # (a timer's flush): Faust commits 0 with its offsets, the fix commits 1.
    for tid in ("g-1-0", "g-1-1"):
        await producer.send("out", b"k", b"v", None, None, None, transactional_id=tid)
    await producer.commit_transactions({"g-1-0": {"tp0": 7}}, "g", start_new_transaction=True)
    await commit_sent_transactions(producer, start_new_transaction=True)
    assert log == [
        "offsets g-1-0 [7]",
        "commit g-1-0",
        "begin g-1-0",
        "commit g-1-1",
        "begin g-1-1",
    ]
    log.clear()
    await commit_sent_transactions(producer, start_new_transaction=False)
    assert log == []  # nothing sent since


async def test_a_transaction_in_progress_is_not_begun_again() -> None:
    log: list[str] = []
    producer = _driver_producer(log, {"g-1-0": True, "g-1-1": False})
    await producer.maybe_begin_transaction("g-1-0")
    await producer.maybe_begin_transaction("g-1-1")
    assert log == ["begin g-1-1"]


async def test_offsets_of_a_partition_without_a_transaction_are_left_to_the_next_owner() -> None:
    log: list[str] = []
    producer = _driver_producer(log, {"g-1-0": True, "g-1-1": False})  # 1 has ended
    offsets = {"g-1-0": {"tp0": 7}, "g-1-1": {"tp1": 9}}
    await producer.commit_transactions(offsets, "g", start_new_transaction=False)
    assert log == ["offsets g-1-0 [7]", "commit g-1-0"]


async def test_waiting_for_acknowledgements_gives_up_when_none_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A message cleared from a stream queue is never acknowledged: wait_empty must not wait
    # for it forever; it commits what was acknowledged and ends the transactions.
    from streams.faust import shutdown

    monkeypatch.setattr(shutdown, "_WAIT_EMPTY_STALL_S", 0.05)
    calls: list[str] = []
    stuck = SimpleNamespace(tp=SimpleNamespace(topic="in", partition=7), acked=False)

    async def commit() -> None:
        calls.append("commit")

    async def commit_and_end_transactions() -> None:
        calls.append("commit and end")

    async def wait_for_ack(timeout: float) -> None:  # noqa: ASYNC109  (Faust's signature)
        await asyncio.sleep(0.02)

    consumer: Any = SimpleNamespace(
        should_stop=False,
        _unacked_messages=[stuck],
        commit=commit,
        commit_and_end_transactions=commit_and_end_transactions,
        _wait_for_ack=wait_for_ack,
        _clean_unacked_messages=lambda: None,
    )
    await asyncio.wait_for(BoundedWaitEmptyConsumer.wait_empty(consumer), timeout=5)
    assert calls[-1] == "commit and end"
    assert set(calls[:-1]) == {"commit"}


async def test_a_failed_batch_stops_every_later_commit_and_crashes_the_app() -> None:
    # A batch that fails part-way must never have its offsets committed: Faust acks a
    # take_events batch even when the agent fails, and restarts the agent, whose later
    # batches would carry the committed offset past the failed one.
    from agents.batching import run_guarded

    crashed: list[BaseException] = []

    class App:
        async def crash(self, exc: BaseException) -> None:
            crashed.append(exc)

    app: Any = App()
    gate = commit_gate(app)

    async def ok() -> None:
        return None

    async def fails() -> None:
        raise RuntimeError("send failed")

    await run_guarded(app, ok())
    assert gate.failed is None and not crashed
    with pytest.raises(RuntimeError, match="send failed"):
        await run_guarded(app, fails())
    assert isinstance(gate.failed, RuntimeError)
    assert [repr(exc) for exc in crashed] == [repr(RuntimeError("send failed"))]

    # A consumer with nothing Faust's own _commit_tps needs: the gate refuses first.
    consumer: Any = SimpleNamespace(app=app, in_transaction=False)
    assert await GatedCommitConsumer._commit_tps(consumer, set(), True) is False


async def test_work_that_fails_after_a_cancel_reports_its_failure() -> None:
    from agents.batching import run_to_completion

    release = asyncio.Event()

    async def work() -> None:
        await release.wait()
        raise RuntimeError("flush failed")

    runner = asyncio.create_task(run_to_completion(work()))
    await asyncio.sleep(0)
    runner.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError, match="flush failed"):
        await runner


async def test_a_rebalance_stops_every_producer_whose_partition_is_not_active_here() -> None:
    # Partition 0 went active -> standby on this worker (so Faust kept its producer: the
    # standby list covers every topic of the group), and now comes back. The old producer
    # was fenced by the owner meanwhile; it must not be reused.
    from faust.types import TP

    log: list[str] = []
    producer = _driver_producer(log, {"app-1-0": True, "app-1-1": True, "app-1-2": True})
    standby = {TP("app-changelog", 2)}

    class App:
        conf = SimpleNamespace(id="app")
        in_transaction = True
        assignor = SimpleNamespace(
            is_standby=lambda tp: tp in standby, group_for_topic=lambda topic: 1
        )

    app: Any = App()
    manager: Any = StaleProducerStoppingTransactionManager.__new__(
        StaleProducerStoppingTransactionManager
    )
    manager.__dict__.update(app=app, producer=producer, consumer=None)
    manager.__dict__["log"] = SimpleNamespace(info=lambda *args, **kwargs: None)
    assigned = {TP("in", 1), TP("app-changelog", 1), TP("app-changelog", 2)}
    await manager.on_rebalance(assigned, set(), set())
    # 0: not assigned at all; 2: assigned as a standby only; 1: active, kept as it is.
    assert sorted(producer._transaction_producers) == ["app-1-1"]
    assert log == ["stop app-1-0", "stop app-1-2"]


async def test_ending_the_transactions_waits_out_a_running_commit_then_commits() -> None:
    # Faust's commit() only waits for a commit already running (the commit timer's, which
    # begins new transactions) and returns: at a revocation the transactions stayed open.
    from faust.transport.consumer import Consumer as TransportConsumer

    commits: list[bool] = []
    timer_commit_may_end = asyncio.Event()

    async def force_commit(topics: Any = None, start_new_transaction: bool = True) -> bool:
        commits.append(start_new_transaction)
        if start_new_transaction:
            await timer_commit_may_end.wait()
        return True

    consumer: Any = SimpleNamespace(
        app=SimpleNamespace(client_only=False),
        loop=asyncio.get_running_loop(),
        _commit_fut=None,
        force_commit=force_commit,
    )
    for name in ("commit", "maybe_wait_for_commit_to_finish"):
        setattr(consumer, name, getattr(TransportConsumer, name).__get__(consumer))
    consumer.commit_and_end_transactions = GatedCommitConsumer.commit_and_end_transactions.__get__(
        consumer
    )

    timer_commit = asyncio.ensure_future(consumer.commit())
    await asyncio.sleep(0)  # the timer's commit is running
    ending = asyncio.ensure_future(consumer.commit_and_end_transactions())
    await asyncio.sleep(0)
    assert commits == [True]
    timer_commit_may_end.set()
    await asyncio.wait_for(asyncio.gather(timer_commit, ending), timeout=5)
    assert commits == [True, False]  # the transactions were ended after the timer's commit
