"""The dashboard: a web UI on the admin listener, behind the admin token.

Server-rendered pages (Jinja2 templates and one small script, all inside the package: no
CDN), one module per page concept — :mod:`~hub.dashboard.overview`,
:mod:`~hub.dashboard.events` (live list and event page), :mod:`~hub.dashboard.models`
(a model's timeline), :mod:`~hub.dashboard.subscriptions`, :mod:`~hub.dashboard.dead_letters`
— over the same data and operations as the admin API (:mod:`hub.admin`), the topics
(:mod:`hub.dashboard.reads`) and the dead-letter replay (:mod:`hub.deliver.replay`).
Sign-in and the security headers: :mod:`hub.dashboard.session`. See docs/dashboard.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from hub.admin.host import AdminHost
from hub.admin.subscription_routes import SubscriptionRoutes
from hub.dashboard.context import Pages
from hub.dashboard.dead_letters import DeadLetterPages
from hub.dashboard.events import EventPages
from hub.dashboard.login import LoginPages
from hub.dashboard.models import ModelPages
from hub.dashboard.overview import Overview
from hub.dashboard.reads import Reads
from hub.dashboard.render import Renderer
from hub.dashboard.session import Sessions
from hub.dashboard.subscriptions import SubscriptionPages

if TYPE_CHECKING:
    from hub.admin.store import SubscriptionStore


class Dashboard:
    """``Dashboard(hub, store, subs, token).add_to(app)`` registers every page."""

    def __init__(self, host: AdminHost, store: SubscriptionStore | None,
                 subs: SubscriptionRoutes, token: str) -> None:
        self.pages = Pages(host=host, store=store, subs=subs, reads=Reads(host),
                           render=Renderer(), sessions=Sessions(token))

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/static/{name}", self.pages.render.static)
        for part in (LoginPages, Overview, EventPages, ModelPages, SubscriptionPages,
                     DeadLetterPages):
            part(self.pages).add_to(router)

__all__ = ["Dashboard"]
