"""Detection rounds (scan → diff → stamp → publish → checkpoint) over the in-memory edges of
:mod:`hub.testing`: the rules of ``hub.detect.detector`` in milliseconds, without a broker or an
MLflow server. The same rules against real ones: tests/integration/test_detector_loop.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings

from hub.config import DetectorConfig
from hub.detect.checkpoint import DetectorState
from hub.detect.detector import Detector
from hub.detect.snapshot import ModelState, Snapshot, VersionState
from hub.events import Event
from hub.metrics import Metrics
from hub.testing import MemoryCheckpoint, MemorySink, StaticScanner
from tests.support.histories import histories
from tests.support.wait import eventually

NOW = datetime(2025, 1, 1, tzinfo=UTC)
EPOCH = "00000000-0000-4000-8000-00000000000e"
FAST = DetectorConfig(poll_interval_s=0.01, backoff_initial_s=0.001, backoff_max_s=0.005,
                      leader_election=False)
IRIS = ModelState("iris", 1, versions={"1": VersionState("1", 2, run_id="r1")})


def detector(scanner: StaticScanner, sink: MemorySink, checkpoint: MemoryCheckpoint,
             config: DetectorConfig = FAST, *, clock: Callable[[], datetime] | None = None,
             reread_after_s: float = 3600) -> Detector:
    """A detector over the in-memory edges; its re-reads after a pushed fact wait an hour
    unless asked otherwise (never, within a test)."""
    return Detector(config, scanner=scanner, sink=sink, checkpoint=checkpoint,
                    tracking_uri="http://user:pw@mlflow.example", metrics=Metrics(),
                    clock=clock or (lambda: NOW), reread_after_s=reread_after_s)


def kinds(events: list[Event]) -> list[tuple[str, str, str | None]]:
    return [(e.type, e.model, e.version) for e in events]


async def test_the_first_round_takes_a_baseline_and_publishes_nothing() -> None:
    scanner, sink, checkpoint = StaticScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    assert await detector(scanner, sink, checkpoint).poll_once() == []
    assert sink.events == [] and checkpoint.saves[-1]["baseline"]
    state = await checkpoint.load()
    assert state is not None and state.snapshot == scanner.snapshot and state.epoch


async def test_emit_existing_publishes_the_registry_as_created() -> None:
    scanner, sink = StaticScanner(Snapshot.of([IRIS])), MemorySink()
    config = FAST.model_copy(update={"emit_existing": True})
    events = await detector(scanner, sink, MemoryCheckpoint(), config).poll_once()
    assert kinds(events) == [("registered_model.created", "iris", None),
                             ("model_version.created", "iris", "1")]
    assert sink.events == events


async def test_a_change_is_published_then_checkpointed_with_its_counter() -> None:
    scanner, sink, checkpoint = StaticScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = detector(scanner, sink, checkpoint)
    await hub_detector.poll_once()
    scanner.snapshot = Snapshot.of([replace(IRIS, aliases={"champion": "1"})])
    events = await hub_detector.poll_once()
    assert kinds(events) == [("model_version_alias.created", "iris", "1")]
    assert sink.batches == [events]
    event = events[0]
    assert event.source == event.data["tracking_uri"] == "http://***@mlflow.example"
    assert event.time == NOW and event.data["aliases"] == ["champion"]
    state = await checkpoint.load()
    assert state is not None and state.snapshot == scanner.snapshot
    assert state.sequences == {"iris": 1}
    assert await hub_detector.poll_once() == []  # nothing changed: nothing published


async def test_a_failed_publish_is_retried_and_the_checkpoint_waits_for_it() -> None:
    scanner, sink, checkpoint = StaticScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = detector(scanner, sink, checkpoint)
    await hub_detector.poll_once()
    before = await checkpoint.load()
    scanner.snapshot = Snapshot.of([replace(IRIS, description="new")])
    sink.fail()
    round_ = asyncio.create_task(hub_detector.poll_once())
    await eventually(lambda: sink.attempts, lambda n: n >= 3, what="publish retries")
    assert await checkpoint.load() == before  # not advanced past what was not acknowledged
    sink.recover()
    events = await round_
    assert kinds(events) == [("registered_model.updated", "iris", None)]
    assert sink.events == events  # once, after the broker acknowledged
    state = await checkpoint.load()
    assert state is not None and state.snapshot == scanner.snapshot


async def test_a_crash_before_the_checkpoint_republishes_the_same_ids() -> None:
    scanner, sink, checkpoint = StaticScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    first = detector(scanner, sink, checkpoint)
    await first.poll_once()
    scanner.snapshot = Snapshot.of([replace(IRIS, tags={"team": "ml"})])
    checkpoint.fail()
    round_ = asyncio.create_task(first.poll_once())
    await eventually(lambda: len(checkpoint.saves), lambda n: n >= 3, what="checkpoint retries")
    first.stop()  # the process dies: published, never checkpointed
    await round_
    checkpoint.recover()
    again = await detector(scanner, sink, checkpoint).poll_once()
    assert [e.id for e in again] == [e.id for e in sink.batches[0]]
    assert kinds(again) == [("registered_model_tag.set", "iris", None)]


async def test_a_crash_while_emitting_existing_objects_repeats_the_same_ids() -> None:
    """First start with ``emit_existing``: the epoch is in the checkpoint before the existing
    objects are published, so a crash before the next checkpoint re-publishes them with the
    same ids (not all-new ones from a second first start)."""
    checkpoint = MemoryCheckpoint()

    class CrashAfterPublishing(MemorySink):
        async def publish(self, events: list[Event]) -> None:
            await super().publish(events)
            checkpoint.fail()  # published; every save from here on fails

    scanner, sink = StaticScanner(Snapshot.of([IRIS])), CrashAfterPublishing()
    config = FAST.model_copy(update={"emit_existing": True})
    first = detector(scanner, sink, checkpoint, config)
    round_ = asyncio.create_task(first.poll_once())
    await eventually(lambda: len(checkpoint.saves), lambda n: n >= 3, what="checkpoint retries")
    first.stop()  # the process dies: published, never checkpointed past the baseline
    await round_
    checkpoint.recover()
    again = await detector(scanner, MemorySink(), checkpoint, config).poll_once()
    assert kinds(again) == [("registered_model.created", "iris", None),
                            ("model_version.created", "iris", "1")]
    assert [e.id for e in again] == [e.id for e in sink.batches[0]]


async def test_a_failed_scan_publishes_nothing_and_the_loop_recovers() -> None:
    scanner, sink, checkpoint = StaticScanner(Snapshot.of([IRIS])), MemorySink(), \
        MemoryCheckpoint()
    hub_detector = detector(scanner, sink, checkpoint)
    await hub_detector.poll_once()
    scanner.fail()
    scanner.snapshot = Snapshot()  # what a partial read would look like: everything deleted
    loop = asyncio.create_task(hub_detector.run())
    try:
        await eventually(lambda: hub_detector.consecutive_failures, lambda n: n >= 2,
                         what="failed scans")
        assert sink.events == []
        scanner.snapshot = Snapshot.of([IRIS, ModelState("wine", 5)])
        scanner.recover()
        await eventually(lambda: sink.events, bool, what="the change after recovery")
    finally:
        hub_detector.stop()
        await loop
    assert kinds(sink.events) == [("registered_model.created", "wine", None)]


async def run_history(history: list[Snapshot], *, restart_every_round: bool
                      ) -> tuple[list[Event], MemoryCheckpoint]:
    """``history[0]`` is the checkpoint (in a fixed epoch, so two runs can compare ids)."""
    checkpoint = MemoryCheckpoint(DetectorState(history[0], {}, EPOCH))
    scanner, sink = StaticScanner(history[0]), MemorySink()
    hub_detector = detector(scanner, sink, checkpoint)
    assert await hub_detector.poll_once() == []
    for snapshot in history[1:]:
        scanner.snapshot = snapshot
        if restart_every_round:
            hub_detector = detector(scanner, sink, checkpoint)
        await hub_detector.poll_once()
    return sink.events, checkpoint


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_restart_between_any_two_rounds_changes_nothing(history: list[Snapshot]) -> None:
    """The checkpoint keeps all a round needs: a detector restarted before every round
    publishes exactly the events (ids included) of one that ran throughout, and the
    checkpoint ends holding the registry as last seen."""
    async def both() -> tuple[list[Event], list[Event], MemoryCheckpoint]:
        kept, _ = await run_history(history, restart_every_round=False)
        restarted, checkpoint = await run_history(history, restart_every_round=True)
        return kept, restarted, checkpoint

    kept, restarted, checkpoint = asyncio.run(both())
    assert restarted == kept
    assert len({e.id for e in restarted}) == len(restarted)
    state = asyncio.run(checkpoint.load())
    assert state is not None and state.snapshot == history[-1]
