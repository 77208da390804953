"""The dashboard's sign-in: the admin token, typed once, kept for the browser session.

``POST /login`` compares the token with :func:`hmac.compare_digest`, exactly as the API's
bearer check does (no more of an oracle than the API already is), then sets a random
session id in a cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, no
``Max-Age``: gone when the browser closes). The token itself never reaches the browser
again. Sessions live in this process's memory (a restart signs everyone out), at most
:data:`MAX_SESSIONS`, each expiring after :data:`IDLE_S` unused.

Every state-changing form carries the session's CSRF token (``_csrf``), checked in constant
time, on top of the strict cookie. Every dashboard answer carries the headers of
:data:`SECURITY_HEADERS`: a Content-Security-Policy that allows no inline script and no
framing, and ``no-store`` for pages.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

COOKIE = "hub_session"
MAX_SESSIONS = 1000
IDLE_S = 12 * 3600.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
WRONG_TOKEN = ("That is not the admin token. Use admin.token from the configuration, or the "
               "token the ready line printed (kept in <state_dir>/admin-token).")

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Session:
    csrf: str
    last_used: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class Sessions:
    def __init__(self, token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token.encode()
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def check_token(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode(), self._token)

    def open(self) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), last_used=self._clock())
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def get(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used > IDLE_S:
            del self._sessions[sid]
            return None
        session.last_used = now
        self._sessions.move_to_end(sid)
        return session

    def close(self, request: web.Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    def page(self, handler: PageHandler, *, api: bool = False) -> PageHandler:
        """``handler`` behind the session: without one, a page redirects to the sign-in
        form (``api``: answers 401); a POST needs the session's CSRF token."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.get(request)
            if session is None:
                if api or request.method != "GET":
                    return secure(web.json_response({"error": "sign in first"}, status=401))
                target = quote(request.path_qs, safe="/?=&")
                raise web.HTTPSeeOther(f"/login?next={target}", headers=SECURITY_HEADERS)
            if request.method == "POST":
                form = await request.post()
                given = form.get("_csrf")
                if not isinstance(given, str) or not hmac.compare_digest(
                        given.encode(), session.csrf.encode()):
                    return secure(web.Response(
                        status=403, text="This form has expired or did not come from the "
                                         "dashboard; reload the page and try again."))
            request["session"] = session
            return secure(await handler(request))
        return guarded

    def login_cookie(self, response: web.StreamResponse, sid: str, request: web.Request) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)

    def logout_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")


def secure(response: web.StreamResponse, *, store: bool = False) -> web.StreamResponse:
    """The security headers, and ``no-store`` unless ``store`` (static assets)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-cache" if store else "no-store")
    return response


__all__ = ["COOKIE", "SECURITY_HEADERS", "Session", "Sessions", "safe_next", "secure"]
