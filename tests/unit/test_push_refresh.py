"""The push path (``Detector.refresh_model``) beside the full poll, over the in-memory edges of
:mod:`hub.testing`: a push costs one model and never waits for a scan, and the two never
publish a change twice, revert one, or reorder a model's changes (rules:
``hub.detect.pushes``). A scanner whose scans and reads the test releases makes every
interleaving reachable without sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hub.detect.detector as detector_module
from hub.detect.checkpoint import DetectorState
from hub.detect.detector import Detector
from hub.detect.diff import apply
from hub.detect.facts import Fact
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.events import Change, Event, EventType
from hub.testing import MemoryCheckpoint, MemorySink, StaticScanner
from tests.support.histories import NAMES, histories
from tests.support.wait import until
from tests.unit.test_detector_rounds import EPOCH, IRIS, detector, kinds

WINE = ModelState("wine", 5, versions={"1": VersionState("1", 6, run_id="r2")})


class SteppedScanner(StaticScanner):
    """A registry whose reads the test holds: the next scan after :attr:`hold_scans` is set
    reads the registry when it starts and returns when :attr:`release_scan` is set; a model
    read for a name in :attr:`held_reads` reads when it starts and returns when that event
    is set."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.hold_scans = False
        self.scanning = asyncio.Event()
        self.release_scan = asyncio.Event()
        self.held_reads: dict[str, asyncio.Event] = {}
        self.reads: list[str] = []
        self.holding = asyncio.Event()  # a held read has read and waits

    async def scan(self) -> Snapshot:
        seen = await super().scan()
        if self.hold_scans:  # this scan only
            self.hold_scans = False
            self.scanning.set()
            await self.release_scan.wait()
            self.scanning.clear()
            self.release_scan.clear()
        return seen

    async def scan_model(self, name: str) -> ModelState | None:
        self.reads.append(name)
        seen = await super().scan_model(name)
        if name in self.held_reads:
            self.holding.set()
            await self.held_reads[name].wait()
        return seen


async def started(scanner: SteppedScanner, sink: MemorySink, checkpoint: MemoryCheckpoint,
                  clock: Callable[[], datetime] | None = None) -> Detector:
    hub_detector = detector(scanner, sink, checkpoint, clock=clock)
    assert await hub_detector.poll_once() == []  # the baseline
    return hub_detector


async def slow_poll(hub_detector: Detector, scanner: SteppedScanner) -> asyncio.Task[Any]:
    """A poll whose scan has read the registry and is held until ``release_scan``."""
    scanner.hold_scans = True
    task = asyncio.create_task(hub_detector.poll_once())
    await scanner.scanning.wait()
    return task


async def test_a_push_during_a_slow_scan_is_published_before_the_scan_ends() -> None:
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    poll = await slow_poll(hub_detector, scanner)  # read before the alias was set
    scanner.snapshot = Snapshot.of([replace(IRIS, aliases={"champion": "1"})])
    pushed = await asyncio.wait_for(hub_detector.refresh_model("iris"), 5)
    assert kinds(pushed) == [("model_version_alias.created", "iris", "1")]
    assert not poll.done()
    scanner.release_scan.set()
    assert await poll == []  # not the alias again, and not its deletion (the older view)
    assert sink.events == pushed
    assert await hub_detector.poll_once() == []
    state = await checkpoint.load()
    assert state is not None and state.snapshot == scanner.snapshot


async def test_a_scan_leaves_a_pushed_model_to_its_next_round_and_applies_the_rest() -> None:
    """The scan saw more than the push (a tag set after it) on iris and a change on wine:
    wine's is published at once, iris's tag by the next round, each once, in order."""
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS, WINE])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    aliased = replace(IRIS, aliases={"champion": "1"})
    scanner.snapshot = Snapshot.of([aliased, WINE])
    read = asyncio.Event()
    scanner.held_reads["iris"] = read
    push = asyncio.create_task(hub_detector.refresh_model("iris"))  # reads the alias, held
    await until(lambda: scanner.reads, "the push's read")
    tagged = replace(aliased, tags={"team": "ml"})
    scanner.snapshot = Snapshot.of([tagged, replace(WINE, description="red")])
    poll = asyncio.create_task(hub_detector.poll_once())  # the push is still in flight
    assert kinds(await poll) == [("registered_model.updated", "wine", None)]
    read.set()
    assert kinds(await push) == [("model_version_alias.created", "iris", "1")]
    assert kinds(await hub_detector.poll_once()) == [("registered_model_tag.set", "iris", None)]
    assert kinds(sink.events) == [("registered_model.updated", "wine", None),
                                  ("model_version_alias.created", "iris", "1"),
                                  ("registered_model_tag.set", "iris", None)]
    assert await hub_detector.poll_once() == []
    state = await checkpoint.load()
    assert state is not None and state.snapshot == scanner.snapshot


async def test_a_scan_does_not_split_a_rename_of_a_pushed_model() -> None:
    """The scan finds iris renamed while a push for iris is in flight: the new name is the
    same model, left to the next round with it, which reports one rename (not setosa
    created, then iris deleted)."""
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    tagged = replace(IRIS, tags={"team": "ml"})
    scanner.snapshot = Snapshot.of([tagged])
    read = asyncio.Event()
    scanner.held_reads["iris"] = read
    push = asyncio.create_task(hub_detector.refresh_model("iris"))
    await until(lambda: scanner.reads, "the push's read")
    scanner.snapshot = Snapshot.of([tagged.renamed("setosa")])
    assert await hub_detector.poll_once() == []
    read.set()
    assert kinds(await push) == [("registered_model_tag.set", "iris", None)]
    assert kinds(await hub_detector.poll_once()) == [("registered_model.renamed", "setosa",
                                                      None)]
    assert len(sink.events) == 2


async def test_pushes_for_two_models_run_concurrently_and_for_one_in_order() -> None:
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS, WINE])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    scanner.snapshot = Snapshot.of([replace(IRIS, description="first"),
                                    replace(WINE, description="red")])
    iris_read = asyncio.Event()
    scanner.held_reads["iris"] = iris_read
    first = asyncio.create_task(hub_detector.refresh_model("iris"))
    await until(lambda: scanner.reads == ["iris"], "the first iris push reading")
    second = asyncio.create_task(hub_detector.refresh_model("iris"))
    wine = await asyncio.wait_for(hub_detector.refresh_model("wine"), 5)  # iris is held
    assert kinds(wine) == [("registered_model.updated", "wine", None)]
    assert scanner.reads == ["iris", "wine"]  # the second iris push waits for the first
    scanner.snapshot = Snapshot.of([replace(IRIS, description="second"),
                                    replace(WINE, description="red")])
    iris_read.set()
    assert [e.data["description"] for e in await first] == ["first"]
    assert [e.data["description"] for e in await second] == ["second"]
    assert [(e.model, e.data["description"]) for e in sink.events] == [
        ("wine", "red"), ("iris", "first"), ("iris", "second")]
    assert hub_detector.state is not None
    assert hub_detector.state.sequences == {"iris": 2, "wine": 1}
    assert await hub_detector.poll_once() == []


async def test_a_push_diffs_its_model_only(monkeypatch: pytest.MonkeyPatch) -> None:
    models = [ModelState(f"m{i:04}", i, versions={"1": VersionState("1", i)})
              for i in range(2000)]
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of(models)), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    sizes: list[tuple[int, int]] = []
    real_diff = detector_module.diff

    def counting_diff(previous: Snapshot, current: Snapshot) -> list[Change]:
        sizes.append((len(previous), len(current)))
        return real_diff(previous, current)

    monkeypatch.setattr(detector_module, "diff", counting_diff)
    scanner.snapshot = Snapshot({**scanner.snapshot.models,
                                 "m0007": replace(models[7], tags={"k": "v"})})
    events = await hub_detector.refresh_model("m0007")
    assert kinds(events) == [("registered_model_tag.set", "m0007", None)]
    assert sizes == [(1, 1)]
    assert checkpoint.saves[-1] == {"changed": {"m0007"}, "removed": set(), "baseline": False}
    assert hub_detector.state is not None and len(hub_detector.state.snapshot) == 2000
    assert hub_detector.state.snapshot == scanner.snapshot


async def test_a_push_gives_the_ids_the_poll_would_have() -> None:
    changed = Snapshot.of([replace(IRIS, aliases={"champion": "1"}, tags={"a": "b"}), WINE])

    async def run(push: bool) -> list[Event]:
        checkpoint = MemoryCheckpoint(DetectorState(Snapshot.of([IRIS, WINE]), {}, EPOCH))
        scanner, sink = SteppedScanner(Snapshot.of([IRIS, WINE])), MemorySink()
        hub_detector = await started(scanner, sink, checkpoint)
        scanner.snapshot = changed
        return await (hub_detector.refresh_model("iris") if push else hub_detector.poll_once())

    pushed, polled = await run(push=True), await run(push=False)
    assert pushed == polled and len(pushed) == 2


async def test_a_failed_push_publish_is_retried_and_a_crash_republishes_the_same_ids() -> None:
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    first = await started(scanner, sink, checkpoint)
    before = await checkpoint.load()
    scanner.snapshot = Snapshot.of([replace(IRIS, description="new")])
    sink.fail()
    push = asyncio.create_task(first.refresh_model("iris"))
    await until(lambda: sink.attempts >= 3, "publish retries")
    assert await checkpoint.load() == before  # nothing acknowledged: nothing checkpointed
    sink.recover()
    published = await push
    assert kinds(published) == [("registered_model.updated", "iris", None)]
    assert sink.events == published
    # published, then the process dies before the checkpoint: the poll repeats the same ids
    scanner.snapshot = Snapshot.of([replace(IRIS, description="newer")])
    checkpoint.fail()
    push = asyncio.create_task(first.refresh_model("iris"))
    await until(lambda: len(sink.events) == 2, "the second publish")
    first.stop()
    assert kinds(await push) == [("registered_model.updated", "iris", None)]
    checkpoint.recover()
    again = await detector(scanner, sink, checkpoint).poll_once()
    assert [e.id for e in again] == [sink.events[1].id]


async def test_a_push_before_the_baseline_or_for_a_gone_model_publishes_nothing() -> None:
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = detector(scanner, sink, checkpoint)
    assert await hub_detector.refresh_model("iris") == []
    await hub_detector.poll_once()
    scanner.snapshot = Snapshot()
    assert await hub_detector.refresh_model("iris") == []  # the poll tells delete from rename
    assert kinds(await hub_detector.poll_once()) == [("registered_model.deleted", "iris", None)]


# --- any interleaving ------------------------------------------------------------------------

STEPS = st.lists(st.sampled_from(["push", "push", "start", "finish", "next", "hold",
                                  "release"]), min_size=1, max_size=60)


def as_change(event: Event) -> Change:
    return Change(EventType(event.type), event.model, event.data, event.version)


def replay_in_order(history: list[Snapshot], batches: list[list[Event]]) -> Snapshot:
    """Apply each published batch to ``history[0]``; every model must pass through its states
    in the history's order (a subsequence: nothing reverted, nothing repeated)."""
    state = history[0]
    position = dict.fromkeys(NAMES, 0)
    for batch in batches:
        state = apply(state, [as_change(e) for e in batch])
        for name in NAMES:
            found = [j for j in range(position[name], len(history))
                     if history[j].models.get(name) == state.models.get(name)]
            assert found, f"{name} went back or off the history after {kinds(batch)}"
            position[name] = found[0]
    return state


async def release(scanner: SteppedScanner, push: asyncio.Task[Any]) -> None:
    for event in scanner.held_reads.values():
        event.set()
    await push
    scanner.held_reads.clear()


Check = Callable[[list[Snapshot], list[list[Event]]], Snapshot]
Facts = Callable[[Snapshot, Snapshot, float], list[Fact]]


async def interleave(history: list[Snapshot], steps: list[str], names: list[int], *,
                     check: Check = replay_in_order, facts: Facts | None = None) -> None:
    """Run ``steps`` against a registry moving through ``history`` (the clock moves 2 s a
    step). With ``facts``, each registry change sends the facts MLflow would push about it;
    a "fact" step delivers one not yet delivered (any of them: out of order), a "late" step
    one delivered before, again (a retry)."""
    checkpoint = MemoryCheckpoint(DetectorState(history[0], {}, EPOCH))
    scanner, sink = SteppedScanner(history[0]), MemorySink()
    now = [1_800_000_000.0]
    hub_detector = await started(scanner, sink, checkpoint,
                                 lambda: datetime.fromtimestamp(now[0], UTC))
    at, poll, held = 0, None, None  # held: a push that has read and waits to apply
    outbox: list[Fact] = []  # sent by MLflow, not delivered yet
    delivered: list[Fact] = []
    for i, step in enumerate(steps):
        name = NAMES[names[i % len(names)]]
        now[0] += 2
        if step == "fact" and outbox and (fact := outbox[names[i % len(names)] % len(
                outbox)]).name not in scanner.held_reads:
            outbox.remove(fact)
            delivered.append(fact)
            await hub_detector.pushed(fact.name, fact)
        elif step == "late" and delivered and (late := delivered[i * 7 % len(
                delivered)]).name not in scanner.held_reads:
            await hub_detector.pushed(late.name, late)
        if step == "next" and at + 1 < len(history) and facts is not None:
            outbox.extend(facts(history[at], history[at + 1], now[0]))
        if step == "next" and at + 1 < len(history):
            at += 1
            scanner.snapshot = history[at]
        elif step == "push" and name not in scanner.held_reads:
            await hub_detector.refresh_model(name)
        elif step == "hold" and held is None:
            scanner.held_reads[name] = asyncio.Event()
            scanner.holding.clear()
            held = asyncio.create_task(hub_detector.refresh_model(name))
            await scanner.holding.wait()
        elif step == "release" and held is not None:
            await release(scanner, held)
            held = None
        elif step == "start" and poll is None:
            poll = await slow_poll(hub_detector, scanner)
        elif step == "finish" and poll is not None:
            scanner.release_scan.set()
            await poll
            poll = None
    if held is not None:
        await release(scanner, held)
    if poll is not None:
        scanner.release_scan.set()
        await poll
    scanner.snapshot = history[-1]
    await hub_detector.poll_once()
    assert await hub_detector.poll_once() == []
    final = check(history, sink.batches)
    assert final == history[-1]
    assert len({e.id for e in sink.events}) == len(sink.events)
    assert hub_detector.state is not None and hub_detector.state.snapshot == history[-1]
    state = await checkpoint.load()
    assert state is not None and state.snapshot == history[-1]
    assert state.sequences == hub_detector.state.sequences


# 400 examples in the full suite, 40 in the quick tier (``-m "not slow"``, the ``_quick``
# twin): same check, fewer draws (as tests/unit/test_diff.py does).
INTERLEAVINGS = (histories(), STEPS,
                 st.lists(st.integers(0, len(NAMES) - 1), min_size=1, max_size=8))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*INTERLEAVINGS)
def test_any_interleaving_of_pushes_and_polls_publishes_the_history_once_in_order(
        history: list[Snapshot], steps: list[str], names: list[int]) -> None:
    """Pushes (for any model, at any moment, one of them possibly still between its read
    and its publication) and polls whose scans span registry changes and pushes: the
    published events replay the history model by model in order, never a state twice or
    backwards, end at the registry as it is, and the checkpoint holds it."""
    asyncio.run(interleave(history, steps, names))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(*INTERLEAVINGS)
def test_any_interleaving_of_pushes_and_polls_quick(
        history: list[Snapshot], steps: list[str], names: list[int]) -> None:
    asyncio.run(interleave(history, steps, names))


async def test_a_push_ending_after_the_detector_stood_down_leaves_it_to_reload() -> None:
    """An elected detector that lost the lead forgets its state while a push is publishing:
    the push does not bring it back; the next round reloads the checkpoint, push included."""
    scanner, sink, checkpoint = SteppedScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = await started(scanner, sink, checkpoint)
    scanner.snapshot = Snapshot.of([replace(IRIS, description="new")])
    sink.fail()
    push = asyncio.create_task(hub_detector.refresh_model("iris"))
    await until(lambda: sink.attempts >= 2, "publish retries")
    hub_detector.forget()
    sink.recover()
    assert kinds(await push) == [("registered_model.updated", "iris", None)]
    assert hub_detector.state is None
    assert await hub_detector.poll_once() == []
    assert hub_detector.state is not None and hub_detector.state.snapshot == scanner.snapshot
