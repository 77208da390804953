"""Property tests of event ids (``hub.events.event_id`` and ``hub.detect.stamp.stamp``): unique
forever, stable under re-publication.

Histories come from a small registry simulator (:mod:`tests.support.histories`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detect.diff import diff
from hub.detect.snapshot import ModelState, Snapshot
from hub.detect.stamp import stamp
from hub.events import IS_PROMPT_TAG, Change, Event, EventType, event_id
from tests.support.histories import NAMES, OPERATIONS, VALUES, histories, operate

NOW = datetime(2025, 1, 1, tzinfo=UTC)
EPOCH_1 = "00000000-0000-4000-8000-000000000001"
EPOCH_2 = "00000000-0000-4000-8000-000000000002"


def run(history: list[Snapshot], epoch: str, sequences: dict[str, int] | None = None
        ) -> tuple[list[Event], dict[str, int]]:
    """A detector polling ``history`` from its first snapshot (the baseline) on."""
    events: list[Event] = []
    seqs = dict(sequences or {})
    for previous, current in pairwise(history):
        stamped, seqs = stamp(diff(previous, current), previous, current, seqs, epoch=epoch,
                              source="http://mlflow", now=NOW)
        events += stamped
    return events, seqs


def content(event: Event) -> tuple[Any, ...]:
    return (event.type, event.model, event.version, event.data)


# --- stamp over histories ------------------------------------------------------------------
# Each property runs its full count in the full suite and a tenth in the quick tier
# (``-m "not slow"``, the ``_quick`` twins): same checks, fewer histories.


@pytest.mark.slow
@settings(max_examples=400)
@given(histories())
def test_ids_never_repeat_within_an_epoch(history: list[Snapshot]) -> None:
    check_ids_never_repeat_within_an_epoch(history)


@settings(max_examples=40)
@given(histories())
def test_ids_never_repeat_within_an_epoch_quick(history: list[Snapshot]) -> None:
    check_ids_never_repeat_within_an_epoch(history)


def check_ids_never_repeat_within_an_epoch(history: list[Snapshot]) -> None:
    events, _ = run(history, EPOCH_1)
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
@settings(max_examples=400)
@given(histories(), st.data())
def test_lost_checkpoints_never_reuse_an_id(history: list[Snapshot], data: st.DataObject
                                           ) -> None:
    check_lost_checkpoints_never_reuse_an_id(history, data)


@settings(max_examples=40)
@given(histories(), st.data())
def test_lost_checkpoints_never_reuse_an_id_quick(history: list[Snapshot],
                                                 data: st.DataObject) -> None:
    check_lost_checkpoints_never_reuse_an_id(history, data)


def check_lost_checkpoints_never_reuse_an_id(history: list[Snapshot], data: st.DataObject) -> None:
    """The detector loses its checkpoint at random polls (a new state topic, a re-created
    cluster) and takes a new baseline, in a new epoch, right away or one poll later (what
    changed in between is never seen): its sequences restart at zero each time."""
    ids: list[str] = []
    start = 0
    for end in range(1, len(history)):
        if end == len(history) - 1 or data.draw(st.booleans(), label=f"lost at {end}"):
            events, _ = run(history[start:end + 1], epoch=f"epoch-{end}")
            ids += [e.id for e in events]
            start = end + data.draw(st.integers(0, 1), label="rebaseline later")
    assert len(ids) == len(set(ids))


@pytest.mark.slow
@settings(max_examples=200)
@given(histories())
def test_the_same_history_in_another_epoch_gets_disjoint_ids(history: list[Snapshot]) -> None:
    check_the_same_history_in_another_epoch_gets_disjoint_ids(history)


@settings(max_examples=20)
@given(histories())
def test_the_same_history_in_another_epoch_gets_disjoint_ids_quick(history: list[Snapshot]) -> None:
    check_the_same_history_in_another_epoch_gets_disjoint_ids(history)


def check_the_same_history_in_another_epoch_gets_disjoint_ids(history: list[Snapshot]) -> None:
    """The checkpoint was lost and the registry went through the same changes again (restored
    from a backup, or values toggled back and forth): every id is new."""
    first, _ = run(history, EPOCH_1)
    second, _ = run(history, EPOCH_2)
    assert [content(e) for e in first] == [content(e) for e in second]
    assert not {e.id for e in first} & {e.id for e in second}


@pytest.mark.slow
@settings(max_examples=400)
@given(histories(), st.data())
def test_republication_after_a_crash_keeps_ids_of_the_same_changes_only(
        history: list[Snapshot], data: st.DataObject) -> None:
    check_republication_after_a_crash_keeps_ids_of_the_same_changes_only(history, data)


@settings(max_examples=40)
@given(histories(), st.data())
def test_republication_after_a_crash_keeps_ids_of_the_same_changes_only_quick(
        history: list[Snapshot], data: st.DataObject) -> None:
    check_republication_after_a_crash_keeps_ids_of_the_same_changes_only(history, data)


def check_republication_after_a_crash_keeps_ids_of_the_same_changes_only(
        history: list[Snapshot], data: st.DataObject) -> None:
    """Round ``crash`` was published but not checkpointed. On restart the detector re-scans
    the registry from the old checkpoint: unchanged, or moved on by one more operation on a
    model the round touched (so the re-scan may merge two changes into a different one)."""
    crash = data.draw(st.integers(1, len(history) - 1), label="crash")
    checkpoint = history[crash - 1]
    earlier, seqs = run(history[:crash], EPOCH_1)
    published, _ = run([checkpoint, history[crash]], EPOCH_1, seqs)
    rescanned = history[crash]
    if data.draw(st.booleans(), label="moved on"):
        touched = sorted({e.model for e in published}) or NAMES
        models = dict(rescanned.models)
        operate(models, data.draw(st.sampled_from(OPERATIONS), label="operation"),
                 data.draw(st.sampled_from(touched), label="model"),
                 data.draw(st.sampled_from(VALUES), label="value"), clock=1000)
        rescanned = Snapshot(models)
    again, _ = run([checkpoint, rescanned], EPOCH_1, seqs)
    if rescanned == history[crash]:
        assert [e.id for e in again] == [e.id for e in published]
    # the change itself, not the context stamp adds (the model's tags now, the version's aliases)
    published_changes = dict(zip([e.id for e in published],
                                 diff(checkpoint, history[crash]), strict=True))
    for event, change in zip(again, diff(checkpoint, rescanned), strict=True):
        assert event.id not in {e.id for e in earlier}
        if event.id in published_changes:  # receivers drop it: it must be the same change
            assert change == published_changes[event.id]


def test_toggling_a_value_gives_a_new_id_each_time_and_in_each_epoch() -> None:
    model = ModelState("m", 1)
    history = [Snapshot.of([model])]
    for value in ("a", "b", "a", "b"):
        history.append(Snapshot.of([replace(model, tags={"k": value})]))
    first, _ = run(history, EPOCH_1)
    # the checkpoint is lost after the first two changes; the same two happen again
    second, _ = run(history[2:], EPOCH_2)
    assert [(e.data["previous_value"], e.data["value"]) for e in first] == [
        (None, "a"), ("a", "b"), ("b", "a"), ("a", "b")]
    ids = [e.id for e in first + second]
    assert len(ids) == len(set(ids)) == 6


def test_a_merged_change_does_not_reuse_the_published_id() -> None:
    """``a→b`` was published, then the hub crashed before its checkpoint; ``b→c`` happened
    meanwhile, so the re-scan sees ``a→c``: a different change, a different id."""
    model = ModelState("m", 1, tags={"k": "a"})
    start, b, c = (Snapshot.of([replace(model, tags={"k": v})]) for v in ("a", "b", "c"))
    published, _ = run([start, b], EPOCH_1)
    merged, _ = run([start, c], EPOCH_1)
    again, _ = run([start, b], EPOCH_1)
    assert [e.data["value"] for e in published + merged] == ["b", "c"]
    assert merged[0].id != published[0].id
    assert again[0].id == published[0].id


def test_stamp_ids_do_not_depend_on_the_time_or_the_source() -> None:
    model = ModelState("m", 1)
    previous, current = Snapshot.of([model]), Snapshot.of([replace(model, tags={"k": "v"})])
    changes = diff(previous, current)
    one, _ = stamp(changes, previous, current, {}, epoch=EPOCH_1, source="a", now=NOW)
    two, _ = stamp(changes, previous, current, {}, epoch=EPOCH_1, source="b",
                   now=NOW + timedelta(hours=1))
    assert [e.id for e in one] == [e.id for e in two]


# --- event_id itself -----------------------------------------------------------------------

scalars = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=4))
changes = st.builds(
    Change,
    type=st.sampled_from(list(EventType)),
    model=st.text(max_size=6),
    data=st.dictionaries(st.sampled_from(["key", "value", "alias", "tags", "version"]),
                         st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars,
                                                            max_size=2)), max_size=4),
    version=st.one_of(st.none(), st.sampled_from(["1", "2", "10"])),
)
epochs = st.uuids().map(str)
timestamps = st.integers(0, 2**45)
sequences = st.integers(1, 2**31)


@settings(max_examples=300)
@given(changes, epochs, timestamps, sequences)
def test_event_id_is_a_function_of_its_inputs(change: Change, epoch: str, ts: int, seq: int
                                              ) -> None:
    reordered = Change(change.type, change.model, dict(reversed(change.data.items())),
                       change.version)
    first = event_id(change, epoch=epoch, model_creation_timestamp=ts, sequence=seq)
    assert first == event_id(reordered, epoch=epoch, model_creation_timestamp=ts, sequence=seq)


@settings(max_examples=300)
@given(changes, epochs, epochs, timestamps, sequences)
def test_distinct_epochs_give_distinct_ids(change: Change, one: str, two: str, ts: int, seq: int
                                           ) -> None:
    if one != two:
        assert (event_id(change, epoch=one, model_creation_timestamp=ts, sequence=seq)
                != event_id(change, epoch=two, model_creation_timestamp=ts, sequence=seq))


@settings(max_examples=300)
@given(changes, changes, epochs, timestamps, sequences, sequences)
def test_distinct_changes_or_places_give_distinct_ids(a: Change, b: Change, epoch: str, ts: int,
                                                      seq_a: int, seq_b: int) -> None:
    if (a.type, a.model, a.version, a.data, seq_a) != (b.type, b.model, b.version, b.data, seq_b):
        assert (event_id(a, epoch=epoch, model_creation_timestamp=ts, sequence=seq_a)
                != event_id(b, epoch=epoch, model_creation_timestamp=ts, sequence=seq_b))


def test_a_prompt_keeps_its_count_across_a_rename_as_a_model_does() -> None:
    prompt = ModelState("p", 1, tags={IS_PROMPT_TAG: "true"})
    history = [Snapshot.of([prompt]), Snapshot.of([replace(prompt, description="d")]),
               Snapshot.of([replace(prompt, name="q", description="d")])]
    events, seqs = run(history, EPOCH_1)
    assert [e.type for e in events] == [EventType.PROMPT_UPDATED, EventType.PROMPT_RENAMED]
    assert seqs == {"q": 2}
