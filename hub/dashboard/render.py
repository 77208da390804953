"""Templates and static assets, both shipped inside the package (no CDN: the dashboard
works with no internet). Jinja2 with autoescaping on; pages are answered with the session's
CSRF token and flash messages in their context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from hub.dashboard.session import Session, secure

STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}


def _clock(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` UTC (or the text as it is)."""
    if not value:
        return "—"
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


class Renderer:
    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("hub.dashboard", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(clock=_clock, pretty=_pretty, percent=_percent)
        folder = resources.files("hub.dashboard") / "static"
        self.assets = {name: (folder / name).read_bytes() for name in STATIC}

    def html(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(self, request: web.Request, template: str, *, status: int = 200,
             **context: Any) -> web.Response:
        session: Session | None = request.get("session")
        flash = []
        if session is not None:
            flash, session.flash = session.flash, []
        body = self.html(template, csrf=session.csrf if session else "", flash=flash,
                         path=request.path, **context)
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.assets:
            raise web.HTTPNotFound()
        return secure(web.Response(body=self.assets[name], content_type=STATIC[name]),
                      store=True)


__all__ = ["Renderer"]
