"""The hub process settles its heap once ready (``hub.heap``): everything alive is frozen out
of later garbage collections, which then walk only what the hub allocates afterwards."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hub import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()  # the test process goes on collecting as before
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfrozen")
def test_settle_freezes_what_is_alive_and_later_collections_skip_it() -> None:
    before = len(gc.get_objects(generation=2))
    heap.settle()
    assert gc.get_freeze_count() > before / 2 > 0  # (some of them were garbage: collected)
    assert len(gc.get_objects(generation=2)) < before / 10
    kept = [object() for _ in range(10)]
    dropped = [[]]
    dropped[0].append(dropped)  # a cycle made after settling is still collected
    del dropped
    assert gc.collect() >= 1
    assert kept


@pytest.mark.usefixtures("unfrozen")
def test_settle_collects_the_young_generation_less_often() -> None:
    gc.set_threshold(700, 10, 10)  # Python's default
    heap.settle()
    assert gc.get_threshold() == heap.THRESHOLDS
    young = gc.get_count()[0]
    for _ in range(5_000):  # cycles: only the collector frees them
        cycle: list[object] = []
        cycle.append(cycle)
    assert gc.get_count()[0] > young + 4_900, "a young collection within 5,000 allocations"
