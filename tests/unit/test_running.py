"""A running subscription retired by a change: in-flight attempts finish before its handler
closes, those past the grace period are cut short as a retry outcome, none starts after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from hub.config import SubscriptionConfig
from hub.deliver.running import CUT_SHORT, RunningSubscription
from hub.events import Event
from hub.outcome import Outcome, Status


class GatedHandler:
    """Answers delivered once ``gate`` opens; records calls and closing, in order."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.story: list[str] = []

    async def deliver(self, event: Event) -> Outcome:
        self.story.append(f"start {event.id}")
        self.started.set()
        await self.gate.wait()
        self.story.append(f"end {event.id}")
        return Outcome.delivered()

    async def aclose(self) -> None:
        self.story.append("closed")


class RaisingHandler:
    async def deliver(self, event: Event) -> Outcome:
        raise TimeoutError("the handler's own timeout")

    async def aclose(self) -> None:
        return None


def subscription(handler: object, models: list[str] | None = None) -> RunningSubscription:
    config = SubscriptionConfig(name="s", handler="console", models=models or ["*"])
    return RunningSubscription(config, handler)  # type: ignore[arg-type]


def event(model: str = "iris") -> Event:
    return Event(id="evt-1", type="model_version.created", model=model, version="1",
                 time=datetime.now(UTC), source="s", data={"model_name": model})


async def test_retire_waits_for_the_attempt_in_flight_then_closes_the_handler() -> None:
    handler = GatedHandler()
    running = subscription(handler)
    attempt = asyncio.create_task(running.deliver(event()))
    await handler.started.wait()
    retiring = asyncio.create_task(running.retire(grace_s=30))
    await asyncio.sleep(0)  # let retire() run up to its wait
    assert running.retired and running.in_flight == 1 and not retiring.done()
    handler.gate.set()
    assert await retiring == 0
    assert (await attempt).status is Status.DELIVERED
    assert handler.story == ["start evt-1", "end evt-1", "closed"]


async def test_an_attempt_past_the_grace_is_cut_short_as_a_retry() -> None:
    handler = GatedHandler()
    running = subscription(handler)
    attempt = asyncio.create_task(running.deliver(event()))
    await handler.started.wait()
    assert await running.retire(grace_s=0.01) == 1
    outcome = await attempt
    assert (outcome.status, outcome.detail) == (Status.RETRY, CUT_SHORT)
    assert handler.story == ["start evt-1", "closed"] and running.in_flight == 0


async def test_no_attempt_starts_once_retired() -> None:
    handler = GatedHandler()
    running = subscription(handler)
    await running.retire(grace_s=1)
    outcome = await running.deliver(event())
    assert outcome.status is Status.RETRY and handler.story == ["closed"]


async def test_the_handlers_own_timeout_is_not_taken_for_a_cut() -> None:
    with pytest.raises(TimeoutError, match="own timeout"):
        await subscription(RaisingHandler()).deliver(event())


def test_filter_and_gone_state_belong_to_one_object() -> None:
    old = subscription(GatedHandler(), models=["iris*"])
    old.gone = True
    new = subscription(GatedHandler(), models=["wine"])
    assert old.wants(event("iris")) and not old.wants(event("wine"))
    assert new.wants(event("wine")) and not new.gone
