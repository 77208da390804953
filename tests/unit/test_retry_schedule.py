"""The retry schedule (``hub.deliver.schedule.next_delay``): which wait comes after which attempt,
how jitter spreads it, and how an endpoint's Retry-After outweighs it."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import DeliveryConfig
from hub.deliver.schedule import max_attempts, next_delay

DEFAULT = DeliveryConfig().retry_schedule_s
delays = st.floats(min_value=0, max_value=86_400, allow_nan=False)
schedules = st.lists(delays, min_size=1, max_size=10)
jitters = st.floats(min_value=0, max_value=1, allow_nan=False)
draws = st.floats(min_value=0, max_value=1, exclude_max=True, allow_nan=False)


def test_without_jitter_the_schedule_is_followed_then_exhausted() -> None:
    waits = [next_delay(DEFAULT, n, retry_after_s=None, jitter=0, draw=0.7)
             for n in range(1, max_attempts(DEFAULT) + 1)]
    assert waits == [*DEFAULT, None]  # schedule_s[0] is the wait before attempt 2
    assert next_delay(DEFAULT, 0, retry_after_s=None, jitter=0, draw=0.5) is None
    assert max_attempts(DEFAULT) == len(DEFAULT) + 1 == 8


def test_the_draw_spreads_linearly_over_plus_minus_jitter() -> None:
    schedule = [100.0]
    at = {draw: next_delay(schedule, 1, retry_after_s=None, jitter=0.2, draw=draw)
          for draw in (0.0, 0.25, 0.5, 0.75)}
    assert at == pytest.approx({0.0: 80.0, 0.25: 90.0, 0.5: 100.0, 0.75: 110.0})


@settings(max_examples=200)
@given(schedules, st.integers(min_value=1, max_value=12), jitters, draws)
def test_a_delay_stays_within_the_jitter_band(schedule: list[float], attempts: int,
                                              jitter: float, draw: float) -> None:
    delay = next_delay(schedule, attempts, retry_after_s=None, jitter=jitter, draw=draw)
    if attempts > len(schedule):
        assert delay is None
        return
    base = schedule[attempts - 1]
    assert delay is not None
    assert 0 <= delay
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


@settings(max_examples=300)
@given(schedules, jitters, draws, draws)
def test_a_later_draw_never_waits_less(schedule: list[float], jitter: float, a: float,
                                       b: float) -> None:
    low, high = sorted((a, b))
    for attempts in range(1, len(schedule) + 1):
        first = next_delay(schedule, attempts, retry_after_s=None, jitter=jitter, draw=low)
        second = next_delay(schedule, attempts, retry_after_s=None, jitter=jitter, draw=high)
        assert first is not None and second is not None and first <= second + 1e-9


@settings(max_examples=200)
@given(schedules, st.integers(min_value=1, max_value=10), jitters, draws, delays)
def test_retry_after_is_a_floor_never_a_ceiling(schedule: list[float], attempts: int,
                                                jitter: float, draw: float,
                                                retry_after: float) -> None:
    own = next_delay(schedule, attempts, retry_after_s=None, jitter=jitter, draw=draw)
    told = next_delay(schedule, attempts, retry_after_s=retry_after, jitter=jitter, draw=draw)
    if own is None:
        assert told is None  # an exhausted schedule is not extended by the endpoint
    else:
        assert told == max(own, retry_after)


@given(st.floats(min_value=0.01, max_value=1))
def test_uniform_draws_centre_on_the_scheduled_delay(jitter: float) -> None:
    """Draws spread evenly over [0, 1) give delays spread evenly around the schedule:
    jitter de-synchronises retries without making them later or sooner on average."""
    n = 1000
    spread = [next_delay([60.0], 1, retry_after_s=None, jitter=jitter, draw=(i + 0.5) / n)
              for i in range(n)]
    values = [d for d in spread if d is not None]
    assert statistics.fmean(values) == pytest.approx(60.0, rel=1e-9)
    assert min(values) == pytest.approx(60.0 * (1 - jitter), abs=60.0 * jitter * 2 / n + 1e-9)
    assert max(values) == pytest.approx(60.0 * (1 + jitter), abs=60.0 * jitter * 2 / n + 1e-9)
    assert len(set(values)) > n // 2  # spread, not lumped


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert DEFAULT == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    assert DeliveryConfig().jitter == 0.2
