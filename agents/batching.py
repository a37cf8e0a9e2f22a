"""The agents' batch loop: one `take_events()` batch at a time, run to completion even when
the agent is being stopped, acknowledged inside the app's commit gate."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import faust
import structlog

from streams.faust.acks import acking_processed, never_commit
from streams.faust.batch_lane import BatchLane
from streams.faust.commit_gate import commit_gate
from streams.faust.consumer_state import committed_offset, current_generation

__all__ = ["consume_batches", "consume_lane", "run_guarded", "run_to_completion"]

logger = structlog.get_logger(__name__)


async def consume_batches(
    app: faust.App,
    stream: faust.StreamT[bytes],
    process: Callable[[list[faust.EventT[bytes]]], Coroutine[Any, Any, None]],
    *,
    batch_max: int,
    within_s: float,
) -> None:
    """The body of a batch agent: `process` each batch, then acknowledge its events.

    Both happen inside the app's commit gate, so under `exactly_once` a transaction holds
    a batch's outputs and state writes together with its offsets, or none of them.
    Events fetched before the latest rebalance are not processed: the rebalance sought
    their partitions back to the committed offsets, so they come again (processed now,
    some would be twice: a partition's next owner, maybe this worker, redoes them). Only
    the acknowledgements made here count towards commits (`streams.faust.acks`).
    """
    gate = commit_gate(app)
    started: dict[Any, int] = {}  # partition -> the generation of its last logged start
    batches = stream.take_events(batch_max, within=within_s)  # type: ignore[attr-defined]
    async for events in batches:
        batch = []
        for event in events:
            if current_generation(app, event.message):
                batch.append(event)
            else:
                never_commit(event.message)
        if not batch:
            continue
        _log_first_offsets(app, batch, started)
        async with gate.work():
            await run_guarded(app, process(batch))
            with acking_processed():
                for event in batch:  # Faust acks them again on the next batch: a no-op
                    await stream.ack(event)


async def consume_lane(
    app: faust.App,
    lane: BatchLane,
    process: Callable[[list[Any], Callable[[], None]], Coroutine[Any, Any, None]],
) -> None:
    """The body of a lane agent: `process` each fetched batch of one partition (aiokafka
    `ConsumerRecord`s, in offset order); it calls the callback it is given once the
    batch's effects are durable (maybe later, after a flush), which marks the batch
    committable.

    Processing runs inside the app's commit gate, as for `consume_batches`. A batch
    fetched before a rebalance is dropped unprocessed (it is fetched again from the
    committed offset); one that became durable only after a rebalance is not marked.
    """
    gate = commit_gate(app)
    while True:
        tp, records, generation = await lane.take()
        async with gate.work():
            if lane.current(tp, generation):
                lane.processing(tp, generation)
                done = functools.partial(_mark_done, lane, tp, records, generation)
                await run_guarded(app, process(records, done))


def _log_first_offsets(app: faust.App, batch: list[Any], started: dict[Any, int]) -> None:
    """Log where a partition's processing starts in each consumer generation, beside the
    offset committed for it: one line per partition per rebalance, which tells who
    processed which offsets when one is ever found missing."""
    for event in batch:
        message = event.message
        if started.get(message.tp) != message.generation_id:
            started[message.tp] = message.generation_id
            logger.info(
                "partition_processing_from",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                generation=message.generation_id,
                committed=committed_offset(app, message.tp),
            )


def _mark_done(lane: BatchLane, tp: Any, records: list[Any], generation: int) -> None:
    if lane.current(tp, generation):
        lane.done(tp, records)


async def run_guarded(app: faust.App, work: Coroutine[Any, Any, None]) -> None:
    """`run_to_completion`; if the work fails, nothing more is committed by this process
    and the app crashes (the worker exits; the partitions' next owner redoes the batch).

    Faust restarts a crashed agent and acknowledges the batch it was handed anyway (when
    `take_events` is closed); committing after that would skip the failed batch.
    """
    try:
        await run_to_completion(work)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        commit_gate(app).fail(exc)
        logger.error("batch_failed_worker_stops", error=repr(exc))
        await app.crash(exc)
        raise


async def run_to_completion(work: Coroutine[Any, Any, None]) -> None:
    """Await `work`; if this task is cancelled meanwhile (shutdown, rebalance), let `work`
    finish first and then re-raise.

    Faust acknowledges a `take_events()` batch when the agent leaves its body, also on
    cancellation; finishing the batch first means no acknowledged event has effects that
    were never written or sent.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait({task})
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure from None  # the work failed: that, not the cancel
        raise
