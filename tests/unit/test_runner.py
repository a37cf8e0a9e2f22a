"""The worker's signal handling that does not need a running worker."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.cli.runner import InsightsWorker


def test_sigusr2_dumps_tasks_instead_of_opening_a_debugger() -> None:
    calls: list[str] = []
    worker: Any = SimpleNamespace(_on_sigusr1=lambda: calls.append("dump tasks"))
    InsightsWorker._on_sigusr2(worker)
    assert calls == ["dump tasks"]
