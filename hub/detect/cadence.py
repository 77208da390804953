"""When the next full scan is due: ``poll_interval_s`` as a rule, ``reconcile_interval_s``
while MLflow's pushes are healthy. Pure: the clock is passed in.

*Healthy* means a push was received and its model read from the registry within the last
``reconcile_interval_s``: MLflow is pushing and the push path works, so the scan is only
there to reconcile what MLflow never pushes (stage transitions, deletions, descriptions,
registered-model tags). When pushes stop for that long, scans are back to every
``poll_interval_s`` at the next check; the detector re-checks at least every poll interval.
"""

from __future__ import annotations

from hub.config import DetectorConfig


def pushes_healthy(config: DetectorConfig, *, last_push: float | None, now: float) -> bool:
    """Whether a push was received within ``reconcile_interval_s`` of ``now`` (monotonic
    seconds; ``last_push`` is ``None`` before the first)."""
    return last_push is not None and now - last_push <= config.reconcile_interval_s


def next_interval(config: DetectorConfig, *, last_push: float | None, now: float) -> float:
    """Seconds from the end of a detection round to the next full scan."""
    if pushes_healthy(config, last_push=last_push, now=now):
        return max(config.reconcile_interval_s, config.poll_interval_s)
    return config.poll_interval_s
