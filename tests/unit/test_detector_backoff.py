"""Detection resumes soon after an outage: retries back off up to the poll interval (at
least 5 s), whatever ``backoff_max_s`` allows (it took 27 s after MLflow was back)."""

from __future__ import annotations

from typing import Any

from hub.config import DetectorConfig
from hub.detect.detector import Detector


def detector(**config: Any) -> Detector:
    return Detector(DetectorConfig(**config), scanner=None, sink=None,  # type: ignore[arg-type]
                    checkpoint=None, tracking_uri="sqlite:///x.db")  # type: ignore[arg-type]


def test_retries_back_off_up_to_the_poll_interval_or_5_s() -> None:
    default = detector(poll_interval_s=5, backoff_initial_s=1, backoff_max_s=60)
    assert [default._backoff(n) for n in range(1, 8)] == [1, 2, 4, 5, 5, 5, 5]
    slow = detector(poll_interval_s=30, backoff_initial_s=1, backoff_max_s=60)
    assert slow._backoff(10) == 30
    quick = detector(poll_interval_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.5)
    assert quick._backoff(10) == 0.5  # backoff_max_s still caps it
    assert detector(poll_interval_s=1, backoff_initial_s=1)._backoff(10) == 5
