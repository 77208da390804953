"""``/models``: the models seen lately and a name to look up; ``/models/{name}``: one
model's timeline (:mod:`hub.dashboard.timeline`), read from the whole events topic."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from hub.dashboard.context import Pages
from hub.dashboard.timeline import build


class ModelPages:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        guard = self.p.sessions.page
        router.add_get("/models", guard(self.index))
        router.add_get("/models/{name}", guard(self.timeline))

    async def index(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("name", "").strip()
        if name:
            raise web.HTTPSeeOther(f"/models/{quote(name, safe='')}")
        seen: dict[str, str] = {}
        for record in await self.p.reads.recent_events():
            seen.setdefault(record.event.model, record.event.time.isoformat())
        return self.p.render.page(request, "models.html", title="Models",
                                  models=sorted(seen.items()))

    async def timeline(self, request: web.Request) -> web.Response:
        model = request.match_info["name"]
        records = await self.p.reads.model_events(model)
        if not records:
            return self.p.render.page(request, "missing.html", status=404, title="No such model",
                                      what=f"No event of a model named {model} is on the topic.")
        return self.p.render.page(request, "model.html", title=f"Model {model}",
                                  timeline=build(model, [r.event for r in records]))


__all__ = ["ModelPages"]
