"""The events the detector published lately, kept in memory to publish them again if the
broker loses them (it came back empty before every subscription had read them).

Bounded twice: by age (``window_s``) and by count (``limit``). A subscription that was
further behind than that when the broker lost its data does not get the older events."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from hub.events import Event

__all__ = ["RecentEvents"]


class RecentEvents:
    def __init__(self, *, window_s: float = 300.0, limit: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._kept: deque[tuple[float, Event]] = deque(maxlen=limit)

    def add(self, events: Iterable[Event]) -> None:
        """Events the broker just acknowledged, in the order they were published."""
        now = self._clock()
        self._kept.extend((now, event) for event in events)

    def events(self) -> list[Event]:
        """The kept events published within the window, oldest first."""
        oldest = self._clock() - self.window_s
        while self._kept and self._kept[0][0] < oldest:
            self._kept.popleft()
        return [event for _, event in self._kept]

    def __len__(self) -> int:
        return len(self._kept)
