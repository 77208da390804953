"""When to try a delivery again. Pure: the random draw is passed in."""

from __future__ import annotations


def next_delay(schedule_s: list[float], attempts_made: int, *, retry_after_s: float | None,
               jitter: float, draw: float) -> float | None:
    """Delay before the next attempt, or ``None`` when the schedule is exhausted.

    ``attempts_made`` counts attempts so far (1 after the first, immediate one), so
    ``schedule_s[0]`` is the wait before attempt 2. ``draw`` in [0, 1) spreads the delay by
    ±``jitter``. A ``Retry-After`` from the endpoint is honoured when it asks for longer.
    """
    index = attempts_made - 1
    if index < 0 or index >= len(schedule_s):
        return None
    delay = schedule_s[index] * (1 + jitter * (2 * draw - 1))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return max(0.0, delay)


def max_attempts(schedule_s: list[float]) -> int:
    return len(schedule_s) + 1
