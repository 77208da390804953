"""The commit rule: never past an offset that is taken but not final."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from hub.deliver.offsets import OffsetTracker

TP = TopicPartition("t", 0)


@given(st.lists(st.booleans(), min_size=1, max_size=60), st.randoms())
def test_commit_target_is_the_lowest_open_offset(opened: list[bool], rnd: object) -> None:
    tracker = OffsetTracker()
    for offset, is_open in enumerate(opened):
        tracker.seen(TP, offset)
        if is_open:
            tracker.opened(TP, offset)
    open_offsets = [o for o, is_open in enumerate(opened) if is_open]
    rnd.shuffle(open_offsets)  # type: ignore[attr-defined]
    for done, offset in enumerate(open_offsets):
        still_open = open_offsets[done:]
        assert tracker.to_commit() == {TP: min(still_open)}
        assert tracker.pending() == len(still_open)
        tracker.finished(TP, offset)
    assert tracker.to_commit() == {TP: len(opened)}


def test_forgotten_partitions_are_neither_committed_nor_counted() -> None:
    tracker = OffsetTracker()
    tracker.seen(TP, 4)
    tracker.opened(TP, 4)
    tracker.forget([TP])
    tracker.finished(TP, 4)  # a delivery that finished after the partition moved away
    assert tracker.to_commit() == {} and tracker.pending() == 0
