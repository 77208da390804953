"""When the next full scan is due (``hub.detect.cadence``): the poll interval as a rule, the
reconcile interval while pushes are healthy; and the detector's loop following it."""

from __future__ import annotations

import asyncio

from hub.config import DetectorConfig
from hub.detect.cadence import next_interval, pushes_healthy
from hub.detect.snapshot import Snapshot
from hub.testing import MemoryCheckpoint, MemorySink, StaticScanner
from tests.support.wait import until
from tests.unit.test_detector_rounds import IRIS, detector

CONFIG = DetectorConfig(poll_interval_s=5, reconcile_interval_s=60, leader_election=False)


def test_without_pushes_the_poll_interval() -> None:
    assert next_interval(CONFIG, last_push=None, now=1000.0) == 5


def test_a_recent_push_gives_the_reconcile_interval() -> None:
    assert next_interval(CONFIG, last_push=1000.0, now=1000.0) == 60
    assert next_interval(CONFIG, last_push=1000.0, now=1059.9) == 60
    assert pushes_healthy(CONFIG, last_push=1000.0, now=1060.0)


def test_pushes_quiet_for_a_reconcile_interval_bring_the_poll_interval_back() -> None:
    assert not pushes_healthy(CONFIG, last_push=1000.0, now=1060.1)
    assert next_interval(CONFIG, last_push=1000.0, now=1060.1) == 5


def test_a_reconcile_interval_shorter_than_the_poll_never_polls_faster() -> None:
    config = CONFIG.model_copy(update={"reconcile_interval_s": 2})
    assert next_interval(config, last_push=1000.0, now=1001.0) == 5


async def test_the_loop_polls_fast_until_a_push_then_reconciles() -> None:
    config = DetectorConfig(poll_interval_s=0.01, reconcile_interval_s=30,
                            backoff_initial_s=0.001, backoff_max_s=0.005,
                            leader_election=False)
    scanner = StaticScanner(Snapshot.of([IRIS]))
    hub_detector = detector(scanner, MemorySink(), MemoryCheckpoint(), config)
    loop = asyncio.create_task(hub_detector.run())
    try:
        await until(lambda: scanner.scans >= 3, "scans every poll interval")
        assert hub_detector.interval_s == 0.01
        await hub_detector.refresh_model("iris")
        await until(lambda: hub_detector.interval_s == 30, "the reconcile interval")
        scans = scanner.scans
        assert hub_detector.health(stale_after_s=10)["stale_after_s"] >= 39  # 10 + reconciling
        hub_detector.last_push_monotonic = None  # pushes went quiet
        await until(lambda: scanner.scans > scans + 2, "scans every poll interval again")
    finally:
        hub_detector.stop()
        await loop
