"""What every dashboard page works with: the hub (read at request time, through the narrow
:class:`~hub.admin.host.AdminHost`, as the admin API), the admin API's subscription
operations, the topic reads, the templates and the sessions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.admin.host import AdminHost
from hub.admin.subscription_routes import SubscriptionRoutes
from hub.dashboard.reads import Reads
from hub.dashboard.render import Renderer
from hub.dashboard.session import Session, Sessions

if TYPE_CHECKING:
    from hub.admin.store import SubscriptionStore


@dataclass
class Pages:
    host: AdminHost
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


__all__ = ["Pages", "form_text", "now_ms"]
