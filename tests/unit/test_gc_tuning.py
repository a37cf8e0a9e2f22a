"""The worker's collector settings: startup objects frozen, collections spaced out, cycles
still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.runtime.gc_tuning import YOUNG_THRESHOLD, tune_collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    tune_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.usefixtures("tuned")
def test_startup_objects_are_frozen_and_collections_spaced_out() -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 20, 10)


@pytest.mark.usefixtures("tuned")
def test_a_cycle_made_after_tuning_is_still_collected_without_an_explicit_collect() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: reference counting alone does not free it
    survivors = [[] for _ in range(2 * YOUNG_THRESHOLD)]  # tracked allocations
    assert gone() is None  # a young collection ran and freed it
    assert len(survivors) == 2 * YOUNG_THRESHOLD
