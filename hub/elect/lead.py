"""Running the detector only while this process is the elected leader.

:func:`lead` turns the :class:`hub.elect.election.LeaderElection`'s acquisitions and losses into
starting and stopping the detector loop, and tells the election when it may hand over
(:meth:`~hub.elect.election.LeaderElection.stepped_down`) once the loop has returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

import structlog

from hub.elect.election import LeaderElection

log = structlog.get_logger(__name__)

STOP_PATIENCE_S = 2.0
"""On shutdown, how long a detection round may take to finish before it is cancelled (on a
lost leadership it is ``handover_timeout_s``). A round cut short is not checkpointed: the
next leader, or the next start, repeats it with the same ids."""


class Detectable(Protocol):
    """What :func:`lead` needs from :class:`hub.detect.detector.Detector`."""

    async def run(self) -> None: ...

    def forget(self) -> None: ...

    def stop(self) -> None: ...

    def resume(self) -> None: ...


async def lead(election: LeaderElection, detector: Detectable, stopping: asyncio.Event) -> None:
    """Run ``detector`` while this process is the elected leader, until ``stopping`` is set.

    On each acquisition the detector forgets its in-memory state, so its first poll reloads
    the checkpoint the previous leader left in Kafka (or, if the broker lost it, writes back
    the state it had set aside). On loss (or ``stopping``) the detector is stopped and its
    loop awaited (cancelled after ``election.handover_timeout_s``, or ``STOP_PATIENCE_S`` on
    shutdown: a broker outage must not hold up SIGTERM) before the election is told it may
    hand over.
    """
    while not stopping.is_set():
        if not await _first(election.wait_until_leader(), stopping):
            return
        detector.forget()
        detector.resume()
        run = asyncio.create_task(detector.run(), name="detector")
        log.info("leader.detecting", identity=election.identity)
        try:
            await _first(election.wait_until_lost(), stopping, run)
        finally:
            detector.stop()
            patience = election.handover_timeout_s
            if stopping.is_set():
                patience = min(patience, STOP_PATIENCE_S)
            done, _ = await asyncio.wait({run}, timeout=patience)
            if not done:
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
            detector.forget()  # a standby must not act on (push into) a stale snapshot
            election.stepped_down()
            log.info("leader.stepped_down", identity=election.identity)
        failure = run.exception() if run.done() and not run.cancelled() else None
        if failure is not None:
            raise failure


async def _first(awaitable: Awaitable[None], stopping: asyncio.Event,
                 *others: asyncio.Task[None]) -> bool:
    """Wait for ``awaitable`` or ``stopping`` or any of ``others``; True if ``awaitable`` won."""
    main = asyncio.ensure_future(awaitable)
    stop = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({main, stop, *others}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (main, stop):
            if not task.done():
                task.cancel()
    if main.done() and not main.cancelled():
        main.result()  # surfaces a failed election
        return not stopping.is_set()
    return False


__all__ = ["STOP_PATIENCE_S", "Detectable", "lead"]
