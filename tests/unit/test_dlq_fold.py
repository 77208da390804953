"""The dead-letter view's fold (hub.deliver.dlq) and replay's choice (hub.deliver.replay.choose):
pure, no broker. A naive model over the whole record list is the reference."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from hub.deliver.dlq import DeadLetterView, fold
from hub.deliver.jobs import DeadLetter, DeadLetterMark
from hub.deliver.replay import choose
from hub.events import Event

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    timestamp: int
    value: bytes


def letter(event_id: str, subscription: str, attempts: int, data: object = None) -> bytes:
    event = Event(id=event_id, type="model_version.created", model="iris", version="1",
                  time=T0, source="s", data={"blob": data})
    return DeadLetter(subscription, event, attempts, f"error {attempts}", 503, "exhausted",
                      T0.isoformat()).encode()


def mark(event_id: str, subscription: str, state: str) -> bytes:
    return DeadLetterMark(subscription, event_id, state, T0.isoformat()).encode()


# one op: (event, subscription, kind, attempts); kind "junk" is an unreadable record
ops = st.lists(st.tuples(st.sampled_from(["e1", "e2", "e3"]), st.sampled_from(["a", "b"]),
                         st.sampled_from(["dead", "replayed", "delivered", "junk"]),
                         st.integers(1, 9)), max_size=40)


def records(sequence: list[tuple[str, str, str, int]]) -> list[Rec]:
    out = []
    for i, (event_id, sub, kind, attempts) in enumerate(sequence):
        value = (letter(event_id, sub, attempts) if kind == "dead" else b"{not json"
                 if kind == "junk" else mark(event_id, sub, kind))
        out.append(Rec(0, i, 1000 + i, value))
    return out


def model(sequence: list[tuple[str, str, str, int]]) -> dict[tuple[str, str], tuple]:
    """(event, sub) → (state, replays, attempts), from the whole list at once."""
    result: dict[tuple[str, str], tuple] = {}
    for event_id, sub in {(e, s) for e, s, _, _ in sequence}:
        mine = [(k, a) for e, s, k, a in sequence if (e, s) == (event_id, sub) and k != "junk"]
        kinds = [k for k, _ in mine]
        if "dead" not in kinds:
            continue
        since = mine[kinds.index("dead"):]
        last_dead = [a for k, a in since if k == "dead"][-1]
        result[(event_id, sub)] = (since[-1][0], sum(k == "replayed" for k, _ in since),
                                   last_dead)
    return result


@given(ops)
def test_the_view_holds_each_key_once_at_its_latest_state(
        sequence: list[tuple[str, str, str, int]]) -> None:
    view = fold(records(sequence))
    got = {s.key: (s.state, s.replays, s.attempts) for s in view.letters()}
    assert got == model(sequence)
    assert view.unreadable == sum(k == "junk" for _, _, k, _ in sequence)
    assert [s.changed for s in view.letters()] == sorted(
        (s.changed for s in view.letters()), reverse=True)


@given(ops, st.booleans())
def test_a_replay_takes_the_dead_and_says_why_it_skipped_the_rest(
        sequence: list[tuple[str, str, str, int]], forced: bool) -> None:
    letters = fold(records(sequence)).letters()
    chosen, skipped = choose(letters, forced=forced)
    if forced:  # a request naming the event replays it whatever its state
        assert (chosen, skipped) == (letters, {})
        return
    assert [s.key for s in chosen] == [s.key for s in letters if s.state == "dead"]
    assert skipped == {reason: n for reason, n in (
        ("replay_in_progress", sum(s.state == "replayed" for s in letters)),
        ("delivered_after_replay", sum(s.state == "delivered" for s in letters))) if n}


def test_filters_keep_only_matching_keys() -> None:
    recs = records([("e1", "a", "dead", 1), ("e2", "a", "dead", 1), ("e1", "b", "dead", 1)])
    assert [s.key for s in fold(recs, subscription="a", event_id="e1").letters()] == [
        ("e1", "a")]
    assert sorted(s.key for s in fold(recs, subscription="a").letters()) == [
        ("e1", "a"), ("e2", "a")]


def test_the_entry_points_at_its_latest_dead_letter_and_keeps_no_event_data() -> None:
    """3000 dead letters of one (event, subscription), 10 kB of data each: one small state
    that knows where the latest one is; the fold holds no record."""
    blob = "x" * 10_000
    view = DeadLetterView()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for n in range(3000):
            view.add(0, n, n, letter("e1", "a", n, blob))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (state,) = view.letters()
    assert (state.offset, state.attempts) == (2999, 2999)
    assert after - before < 20_000, f"the view grew by {after - before} bytes"
