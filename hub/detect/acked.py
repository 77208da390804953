"""The detector's writes to the broker, each retried until acknowledged or stopping: events
(:meth:`Acked.publish`) and the checkpoint (:meth:`Acked.save`). Nothing is dropped: a write
that fails waits (backing off up to the poll interval) and goes again, with the same events
and ids. An outage is logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from hub.config import DetectorConfig
from hub.detect.checkpoint import Checkpoint, DetectorState
from hub.detect.recent import RecentEvents
from hub.errors import BusError
from hub.events import Event

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    async def publish(self, events: list[Event]) -> None: ...


def backoff(config: DetectorConfig, attempt: int) -> float:
    """The wait before retry ``attempt``: doubles from ``backoff_initial_s``, up to
    ``backoff_max_s`` but never beyond the poll interval (or 5 s), so an outage ends at most
    that long before work resumes."""
    cap = min(config.backoff_max_s, max(config.poll_interval_s, 5.0))
    return min(cap, config.backoff_initial_s * 2 ** min(max(0, attempt - 1), 30))


class Acked:
    """``before_retry`` runs before each publish retry and returns False to give up (the
    detector writes back a checkpoint the broker lost there)."""

    def __init__(self, config: DetectorConfig, *, sink: EventSink, checkpoint: Checkpoint,
                 stopping: asyncio.Event, recent: RecentEvents,
                 before_retry: Callable[[], Awaitable[bool]]) -> None:
        self._config = config
        self._sink = sink
        self._checkpoint = checkpoint
        self._stopping = stopping
        self._recent = recent
        self._before_retry = before_retry

    async def publish(self, events: list[Event], *, reseeding: bool = False) -> bool:
        """Publish until the broker acknowledges (True) or the detector stops (False). Between
        attempts (unless ``reseeding``) ``before_retry`` runs."""
        attempt = 0
        while True:
            try:
                await self._sink.publish(events)
            except BusError as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("detector.publish_failed", error=str(exc), events=len(events),
                                action="retrying until the broker acknowledges; nothing is "
                                       "dropped")
                if await self.wait(self.backoff(attempt)):
                    return False
                if not reseeding and not await self._before_retry():
                    return False
                continue
            if attempt:
                log.info("detector.publish_resumed", events=len(events), attempts=attempt + 1)
            if not reseeding:
                self._recent.add(events)
            return True

    async def save(self, state: DetectorState, *, changed: set[str], removed: set[str],
                   baseline: bool = False) -> bool:
        """Save, retrying until the broker acknowledges (True) or the detector stops (False)."""
        attempt = 0
        while True:
            try:
                await self._checkpoint.save(state, changed=changed, removed=removed,
                                            baseline=baseline)
                return True
            except BusError as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("detector.checkpoint_failed", error=str(exc),
                                action="retrying until the broker acknowledges")
                if await self.wait(self.backoff(attempt)):
                    return False

    def backoff(self, attempt: int) -> float:
        return backoff(self._config, attempt)

    async def wait(self, seconds: float) -> bool:
        """Wait, or return True at once if stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True
