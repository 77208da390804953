"""``/login`` and ``/logout``: the admin token in, a session cookie out (see
:mod:`hub.dashboard.session`). A wrong token gets the form again with 401 and a message that
says where the right one is, never which part was wrong."""

from __future__ import annotations

import structlog
from aiohttp import web

from hub.dashboard.context import Pages, form_text
from hub.dashboard.session import WRONG_TOKEN, safe_next, secure

log = structlog.get_logger(__name__)


class LoginPages:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/login", self.form)
        router.add_post("/login", self.login)
        router.add_post("/logout", self.p.sessions.page(self.logout))

    async def form(self, request: web.Request) -> web.StreamResponse:
        if self.p.sessions.get(request) is not None:
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        return secure(self.p.render.page(request, "login.html", title="Sign in", error=None,
                                         next=safe_next(request.query.get("next"))))

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = safe_next(form_text(form, "next"))
        if not self.p.sessions.check_token(form_text(form, "token")):
            log.warning("dashboard.login_refused", peer=request.remote)
            return secure(self.p.render.page(request, "login.html", status=401,
                                             title="Sign in", error=WRONG_TOKEN, next=target))
        sid, _ = self.p.sessions.open()
        log.info("dashboard.login", peer=request.remote)
        response = web.HTTPSeeOther(target)
        self.p.sessions.login_cookie(response, sid, request)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.p.sessions.close(request)
        response = web.HTTPSeeOther("/login")
        self.p.sessions.logout_cookie(response)
        raise response


__all__ = ["LoginPages"]
