"""Detection resumes soon after an outage: retries back off up to the poll interval (at
least 5 s), whatever ``backoff_max_s`` allows (it took 27 s after MLflow was back)."""

from __future__ import annotations

from hub.config import DetectorConfig
from hub.detect.acked import backoff


def test_retries_back_off_up_to_the_poll_interval_or_5_s() -> None:
    default = DetectorConfig(poll_interval_s=5, backoff_initial_s=1, backoff_max_s=60)
    assert [backoff(default, n) for n in range(1, 8)] == [1, 2, 4, 5, 5, 5, 5]
    slow = DetectorConfig(poll_interval_s=30, backoff_initial_s=1, backoff_max_s=60)
    assert backoff(slow, 10) == 30
    quick = DetectorConfig(poll_interval_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.5)
    assert backoff(quick, 10) == 0.5  # backoff_max_s still caps it
    assert backoff(DetectorConfig(poll_interval_s=1, backoff_initial_s=1), 10) == 5
