"""Slack pacing, pure: the delay arithmetic, a channel's pacer on an injected clock (requests
spaced from the end of the previous one, a rate-limit block yielding the time left), and the
bounded map of threads."""

from __future__ import annotations

import pytest

from handlers.slack_pacing import ChannelPacer, ThreadMap, blocked_for, pacing_delay


def test_pacing_delay_arithmetic() -> None:
    assert pacing_delay(now=5.0, last_sent=None, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=4.5, min_interval_s=1.0) == pytest.approx(0.5)
    assert pacing_delay(now=5.0, last_sent=4.0, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=1.0, min_interval_s=1.0) == 0.0
    assert pacing_delay(now=5.0, last_sent=5.0, min_interval_s=0.0) == 0.0
    assert blocked_for(now=5.0, blocked_until=None) == 0.0
    assert blocked_for(now=5.0, blocked_until=12.0) == pytest.approx(7.0)
    assert blocked_for(now=13.0, blocked_until=12.0) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_pacer_spaces_requests_from_the_end_of_the_previous_one() -> None:
    clock = FakeClock()
    pacer = ChannelPacer(clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(3):
        async with pacer.turn(1.0) as blocked:
            assert blocked == 0.0
            starts.append(clock.now)
            clock.now += 0.25  # the request itself took a while
    assert starts == [100.0, 101.25, 102.5]
    assert clock.sleeps == pytest.approx([1.0, 1.0])
    clock.now += 5.0
    async with pacer.turn(1.0) as blocked:
        assert blocked == 0.0 and len(clock.sleeps) == 2  # idle long enough: no wait


async def test_blocked_pacer_yields_the_time_left_without_sending() -> None:
    clock = FakeClock()
    pacer = ChannelPacer(clock=clock, sleep=clock.sleep)
    pacer.block(30.0)
    async with pacer.turn(1.0) as blocked:
        assert blocked == pytest.approx(30.0)
    assert pacer.last_sent is None and clock.sleeps == []
    clock.now += 30.0
    async with pacer.turn(1.0) as blocked:
        assert blocked == 0.0


def test_thread_map_evicts_least_recently_used() -> None:
    threads = ThreadMap(2)
    threads.put(("m", "1"), ("C", "1.0"))
    threads.put(("m", "2"), ("C", "2.0"))
    assert threads.get(("m", "1")) == ("C", "1.0")  # now most recently used
    threads.put(("m", "3"), ("C", "3.0"))
    assert threads.get(("m", "2")) is None
    assert threads.get(("m", "1")) == ("C", "1.0") and len(threads) == 2
