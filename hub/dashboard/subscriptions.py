"""``/subscriptions``: the list with state and last hour's success rate; a form to create or
edit one (the admin API's own operations and validation, :class:`~hub.admin.
subscription_routes.SubscriptionRoutes`: its errors are shown next to the field they name);
pause/resume, delete and test-send, each a POST that redirects back (post/redirect/get) with
what happened shown once."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hub.admin.bodies import ApiError
from hub.dashboard.context import Pages, form_text, now_ms
from hub.dashboard.reads import HOUR_MS
from hub.outcome import Status
from hub.plugins import available_handlers

FIELDS = ("name", "handler", "url", "events", "models", "description", "options")
CORE = {"name", "handler", "events", "models", "enabled", "source", "description", "url"}


def body_from_form(form: Any) -> dict[str, Any]:
    """The API body a submitted form stands for; ``ApiError(422)`` at ``options`` when the
    extra settings are not a JSON object."""
    body: dict[str, Any] = {}
    raw = form_text(form, "options")
    if raw:
        try:
            extra = json.loads(raw)
        except ValueError:
            raise ApiError(422, "more settings must be a JSON object, e.g. "
                                '{"secret": "whsec_..."}', "options") from None
        if not isinstance(extra, dict):
            raise ApiError(422, "more settings must be a JSON object", "options")
        body.update(extra)
    for name in ("name", "handler", "url", "description"):
        if value := form_text(form, name):
            body[name] = value
    for name in ("events", "models"):
        items = [p for p in form_text(form, name).replace(",", " ").split() if p]
        if items:
            body[name] = items
    body["enabled"] = form.get("enabled") == "on"
    return body


def form_from_view(view: dict[str, Any]) -> dict[str, str]:
    """A subscription as the API shows it (masked), as the form's field values."""
    extra = {k: v for k, v in view.items() if k not in CORE}
    return {"name": view["name"], "handler": view["handler"], "url": view.get("url") or "",
            "events": ", ".join(view.get("events", [])),
            "models": ", ".join(view.get("models", [])),
            "description": view.get("description") or "",
            "options": json.dumps(extra, indent=2) if extra else "",
            "enabled": "on" if view.get("enabled", True) else ""}


def error_field(error: ApiError, body: dict[str, Any]) -> str:
    """Which form field an API error belongs next to (``""``: the form as a whole)."""
    root = (error.field or "").split(".")[0]
    if root in FIELDS:
        return root
    if root and root in body:
        return "options"
    return ""


class SubscriptionPages:
    def __init__(self, pages: Pages) -> None:
        self.p = pages

    def add_to(self, router: web.UrlDispatcher) -> None:
        guard = self.p.sessions.page
        router.add_get("/subscriptions", guard(self.index))
        router.add_get("/subscriptions/new", guard(self.new))
        router.add_post("/subscriptions/new", guard(self.create))
        router.add_get("/subscriptions/{name}/edit", guard(self.edit))
        router.add_post("/subscriptions/{name}/edit", guard(self.update))
        router.add_post("/subscriptions/{name}/pause", guard(self.pause))
        router.add_post("/subscriptions/{name}/resume", guard(self.resume))
        router.add_post("/subscriptions/{name}/delete", guard(self.delete))
        router.add_post("/subscriptions/{name}/test", guard(self.test))

    def _state(self, view: dict[str, Any]) -> str:
        if not view.get("enabled", True):
            return "paused"
        worker = self.p.host.worker
        if worker is None:
            return "enabled (delivered by another process)"
        if view["name"] in worker.missing_lanes():
            return "not running: its handler could not be built"
        if view["name"] in worker.waiting_lanes():
            return "waiting for partitions"
        return "running" if view["name"] in worker.lanes else "starting"

    async def index(self, request: web.Request) -> web.Response:
        attempts = await self.p.reads.attempts_since(now_ms() - HOUR_MS)
        tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for a in attempts:
            tally[a.subscription][0] += a.status == Status.DELIVERED.value
            tally[a.subscription][1] += 1
        rows = [{"view": v, "state": self._state(v), "attempts": tally[v["name"]][1],
                 "rate": (tally[v["name"]][0] / tally[v["name"]][1]
                          if tally[v["name"]][1] else None)}
                for v in self.p.subs.views()]
        return self.p.render.page(request, "subscriptions.html", title="Subscriptions",
                                  rows=rows, runtime=self.p.store is not None)

    def _form(self, request: web.Request, *, values: dict[str, str], editing: str | None,
              errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
        return self.p.render.page(
            request, "subscription_form.html", status=status,
            title=f"Edit {editing}" if editing else "New subscription", values=values,
            editing=editing, errors=errors or {}, handlers=sorted(available_handlers()))

    async def new(self, request: web.Request) -> web.Response:
        return self._form(request, editing=None, values={
            "name": "", "handler": "webhook", "url": "", "events": "*", "models": "*",
            "description": "", "options": "", "enabled": "on"})

    async def edit(self, request: web.Request) -> web.Response:
        sub, source = self._find(request)
        return self._form(request, values=form_from_view(self.p.subs.view_of(sub, source)),
                          editing=sub.name)

    async def create(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, editing=None)

    async def update(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, editing=request.match_info["name"])

    async def _save(self, request: web.Request, *, editing: str | None) -> web.StreamResponse:
        form = await request.post()
        values = {name: form_text(form, name) for name in FIELDS}
        values["enabled"] = "on" if form.get("enabled") == "on" else ""
        body: dict[str, Any] = {}
        try:
            body = body_from_form(form)
            if editing is None:
                saved = await self.p.subs.create(body)
            else:
                saved = await self.p.subs.update(editing, body, patch=False)
        except ApiError as exc:
            field = error_field(exc, body)
            return self._form(request, values=values, editing=editing,
                              errors={field: exc.message}, status=exc.status)
        self.p.flash(request, "ok", f"Subscription {saved['name']} "
                                    f"{'created' if editing is None else 'saved'}.")
        raise web.HTTPSeeOther("/subscriptions")

    def _find(self, request: web.Request) -> Any:
        try:
            return self.p.subs.find(request.match_info["name"])
        except ApiError as exc:
            raise web.HTTPNotFound(text=exc.message) from None

    async def _act(self, request: web.Request, action: Any, done: str) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            await action(name)
        except ApiError as exc:
            self.p.flash(request, "error", exc.message)
        else:
            self.p.flash(request, "ok", done.format(name=name))
        raise web.HTTPSeeOther(f"/subscriptions#sub-{quote(name, safe='')}")

    async def pause(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, lambda n: self.p.subs.update(
            n, {"enabled": False}, patch=True), "Subscription {name} paused.")

    async def resume(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, lambda n: self.p.subs.update(
            n, {"enabled": True}, patch=True), "Subscription {name} resumed.")

    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._act(request, self.p.subs.delete, "Subscription {name} deleted.")

    async def test(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            result = await self.p.subs.test_send(name)
        except ApiError as exc:
            self.p.flash(request, "error", f"Test to {name} not sent: {exc.message}")
        else:
            answer = (f"HTTP {result['http_status']}" if result["http_status"] is not None
                      else "no HTTP answer")
            detail = f" — {result['detail']}" if result["detail"] else ""
            self.p.flash(request, "ok" if result["status"] == Status.DELIVERED.value
                         else "error",
                         f"Test to {name}: {result['status']}, {answer}{detail} "
                         f"({result['latency_ms']:.0f} ms)")
        raise web.HTTPSeeOther(f"/subscriptions#sub-{quote(name, safe='')}")


__all__ = ["SubscriptionPages", "body_from_form", "error_field", "form_from_view"]
