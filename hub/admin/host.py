"""What the admin listener's routes read of the process they serve: :class:`AdminHost`, the
narrow view of :class:`hub.app.Hub` that the admin API and the dashboard share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.deliver.worker import DeliveryWorker
    from hub.detect.detector import Detector
    from hub.elect.election import LeaderElection
    from hub.metrics import Metrics


class AdminHost(Protocol):
    """What the admin API reads of the process it serves (:class:`hub.app.Hub`), at request
    time: the parts appear as the hub starts, and are ``None`` where this process has no such
    role."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def detector(self) -> Detector | None: ...

    @property
    def election(self) -> LeaderElection | None: ...

    @property
    def worker(self) -> DeliveryWorker | None: ...


__all__ = ["AdminHost"]
