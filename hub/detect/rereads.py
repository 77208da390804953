"""The re-read that follows a push applied from its payload (:mod:`hub.detect.facts`): one per
model, shortly after the push, so a burst of pushes about one model costs one read of it,
and what the payloads could not say (a stage transition, a description) is published soon
after the pushed change instead of at the next full scan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

REREAD_AFTER_S = 1.0


class Rereads:
    """Schedules ``reread(name)`` ``delay_s`` after the first push for ``name`` that is not
    already waiting for one; a push during a re-read schedules the next."""

    def __init__(self, reread: Callable[[str], Awaitable[object]],
                 delay_s: float = REREAD_AFTER_S) -> None:
        self._reread = reread
        self._delay_s = delay_s
        self._waiting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, name: str) -> None:
        if name in self._waiting:
            return
        self._waiting.add(name)
        task = asyncio.create_task(self._run(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str) -> None:
        try:
            await asyncio.sleep(self._delay_s)
        finally:
            self._waiting.discard(name)
        try:
            await self._reread(name)
        except Exception as exc:  # e.g. MLflow unreachable: never a silent dead task
            log.warning("detector.reread_failed", model=name, error=str(exc),
                        action="the next full scan reconciles it")

    async def cancel(self) -> None:
        """Drop every re-read (stopping: the next full scan reconciles instead)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
