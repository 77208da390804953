"""What every dashboard page works with: the hub (read at request time, through the narrow
:class:`DashboardHost`), the admin API's subscription operations, the topic reads, the
templates and the sessions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from hub.admin.subscription_routes import SubscriptionRoutes
from hub.config import HubConfig
from hub.dashboard.reads import Reads
from hub.dashboard.render import Renderer
from hub.dashboard.session import Session, Sessions

if TYPE_CHECKING:
    from hub.admin.store import SubscriptionStore
    from hub.deliver.worker import DeliveryWorker
    from hub.detect.detector import Detector
    from hub.elect.election import LeaderElection
    from hub.metrics import Metrics


class DashboardHost(Protocol):
    """What the dashboard reads of the process it serves: the admin API's
    :class:`hub.admin.server.AdminHost`, no more."""

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


@dataclass
class Pages:
    host: DashboardHost
    store: SubscriptionStore | None
    subs: SubscriptionRoutes
    reads: Reads
    render: Renderer
    sessions: Sessions

    def flash(self, request: web.Request, kind: str, message: str) -> None:
        """A message shown once, on the next page this session loads."""
        session: Session = request["session"]
        session.flash.append((kind, message))

    def subscription_names(self) -> list[str]:
        return [v["name"] for v in self.subs.views()]


def now_ms() -> int:
    return int(time.time() * 1000)


def form_text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


__all__ = ["DashboardHost", "Pages", "form_text", "now_ms"]
