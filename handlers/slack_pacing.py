"""Per-channel pacing and the thread map of the ``slack`` handler.

A :class:`ChannelPacer` queues the messages to one channel (one webhook URL, or one bot token
and channel): FIFO, one request at a time, each starting ``min_interval_s`` after the
previous one finished; after a 429 the channel stays blocked for ``Retry-After``. The
arithmetic is pure (:func:`pacing_delay`, :func:`blocked_for`); the clock and the sleep are
injectable. A :class:`ThreadMap` remembers which Slack thread a model version's messages go
to, least recently used evicted.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

# --- pure decisions ------------------------------------------------------------------------


def pacing_delay(*, now: float, last_sent: float | None, min_interval_s: float) -> float:
    """Seconds to wait before the next message to a channel may go out, ``last_sent`` being
    when the previous request finished. Pure."""
    if last_sent is None:
        return 0.0
    return max(0.0, last_sent + min_interval_s - now)


def blocked_for(*, now: float, blocked_until: float | None) -> float:
    """Seconds a channel stays blocked by a 429's ``Retry-After``. Pure."""
    return 0.0 if blocked_until is None else max(0.0, blocked_until - now)


# --- per-channel pacing and threads --------------------------------------------------------


@dataclass
class ChannelPacer:
    """Queues messages to one channel: FIFO (``asyncio.Lock`` is fair), one request at a
    time, the next one starting ``min_interval_s`` after the previous one *finished*, so
    arrivals at Slack are at least that far apart whatever the network latency.
    ``clock``/``sleep`` are injectable."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    last_sent: float | None = None
    blocked_until: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def turn(self, min_interval_s: float) -> AsyncIterator[float]:
        """Hold this channel's turn. Yields 0 (send now), or the seconds the channel stays
        blocked by a 429 (send nothing: the caller answers ``retry``)."""
        async with self.lock:
            blocked = await self._wait(min_interval_s)
            try:
                yield blocked
            finally:
                if not blocked:
                    self.last_sent = self.clock()

    async def _wait(self, min_interval_s: float) -> float:
        while True:
            blocked = blocked_for(now=self.clock(), blocked_until=self.blocked_until)
            if blocked > 0:
                return blocked
            delay = pacing_delay(now=self.clock(), last_sent=self.last_sent,
                                 min_interval_s=min_interval_s)
            if delay <= 0:
                return 0.0
            await self.sleep(delay)

    def block(self, seconds: float) -> None:
        until = self.clock() + seconds
        self.blocked_until = max(until, self.blocked_until or until)


class ThreadMap:
    """``(model, version) -> (channel id, thread ts)``, least recently used evicted."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._items: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> tuple[str, str] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: tuple[str, str]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["ChannelPacer", "ThreadMap", "blocked_for", "pacing_delay"]
