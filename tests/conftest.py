"""Shared fixtures: the session's real broker, unique topic names, worker and observation
factories."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Broker, real_broker
from tests.support.worker import TopicNames, WorkerProcess, worker_env

_ids = itertools.count()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Collect the garbage of the tests before pytest's summary. Finalizers of objects
    left by tests (Faust services never started) that run inside an `ast.parse` (pytest
    rewriting a module first imported by its summary hooks) trip CPython 3.11's "AST
    constructor recursion depth mismatch", which hides the test results; seen when
    `tests/unit/test_faust_pitfalls.py` runs alone."""
    gc.collect()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """A real broker for the whole session (KAFKA_BOOTSTRAP_SERVERS, testcontainers, embedded)."""
    with real_broker() as found:
        yield found


@pytest.fixture
def names() -> TopicNames:
    """Topic names and a group id of this test's own."""
    return TopicNames()


@pytest.fixture
def start_worker(
    broker: Broker, names: TopicNames, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes on this test's topics; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        index = len(started)
        env = worker_env(broker.bootstrap_servers, names, tmp_path / f"data-{index}", **overrides)
        worker = WorkerProcess(env, tmp_path / f"worker-{index}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def observation_factory() -> Callable[..., dict[str, Any]]:
    """A valid observation as a JSON-ready dict; keyword overrides replace fields."""

    def make(**overrides: Any) -> dict[str, Any]:
        n = next(_ids)
        record: dict[str, Any] = {
            "event_id": f"evt-{n}",
            "observer_id": "observer-a",
            "subject_id": "s-17",
            "metric": "temp",
            "value": 21.4,
            "observed_at": "2026-11-27T12:00:03.120Z",
        }
        record.update(overrides)
        return record

    return make
