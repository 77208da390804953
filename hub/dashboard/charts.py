"""The overview's small charts, pure: records bucketed per minute over the last hour, and
the bars an inline SVG draws for them (no clock, no I/O: ``now_ms`` is passed in)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MINUTE_MS = 60_000


def per_minute(times_ms: Iterable[int], now_ms: int, minutes: int = 60) -> list[int]:
    """How many of ``times_ms`` fall in each of the last ``minutes`` minutes, oldest first
    (the last bucket ends at ``now_ms``); times outside the window are not counted."""
    counts = [0] * minutes
    start = now_ms - minutes * MINUTE_MS
    for t in times_ms:
        if start <= t < now_ms:
            counts[(t - start) // MINUTE_MS] += 1
        elif t == now_ms:
            counts[-1] += 1
    return counts


def success_per_minute(outcomes: Iterable[tuple[int, bool]], now_ms: int,
                       minutes: int = 60) -> list[float | None]:
    """The share of successful outcomes ``(time ms, delivered)`` in each minute, oldest
    first; ``None`` for a minute without any."""
    outcomes = list(outcomes)
    total = per_minute((t for t, _ in outcomes), now_ms, minutes)
    good = per_minute((t for t, ok in outcomes if ok), now_ms, minutes)
    return [None if n == 0 else ok / n for ok, n in zip(good, total, strict=True)]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float | None  # what the bar shows (None: no data that minute)
    minute: int  # minutes before now at which the bucket ends (0 = the current one)


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: float
    height: float
    peak: float

    @property
    def empty(self) -> bool:
        return all(b.value in (None, 0) for b in self.bars)


def bars(values: Sequence[float | None], *, width: float = 240, height: float = 40,
         peak: float | None = None) -> Chart:
    """One bar per value, left to right, scaled so ``peak`` (default: the largest value,
    at least 1) fills the height; a ``None`` value draws no bar."""
    top = peak if peak is not None else max([v for v in values if v is not None] + [1.0])
    step = width / max(len(values), 1)
    out = []
    for i, value in enumerate(values):
        h = 0.0 if value is None or top <= 0 else max(0.0, min(1.0, value / top)) * height
        if value is not None and value > 0:
            h = max(h, 1.0)  # a minute with something is never invisible
        out.append(Bar(x=round(i * step, 2), y=round(height - h, 2),
                       width=round(max(step - 1, 1), 2), height=round(h, 2), value=value,
                       minute=len(values) - 1 - i))
    return Chart(out, width, height, top)


__all__ = ["MINUTE_MS", "Bar", "Chart", "bars", "per_minute", "success_per_minute"]
