"""The admin API's subscription routes: list, create, read, replace, patch, delete, test.

``/api/subscriptions`` shows the configured subscriptions (the file's, or the built-in
console default; read-only: 409 on a change, saying where to change them) and the runtime
ones of the :class:`hub.admin.store.SubscriptionStore`, which the routes write. Bodies are
parsed, validated and masked by :mod:`hub.admin.bodies`; errors are raised as
:class:`~hub.admin.bodies.ApiError` and answered by the admin server's middleware.
``POST /api/subscriptions/{name}/test`` delivers a sample event through the subscription's
handler at once and answers with the outcome.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import web

from hub.admin.bodies import (
    ApiError,
    description_of,
    merge_patch,
    parse_object,
    sample_event,
    unmask,
    validate_subscription,
    view,
)
from hub.config import HubConfig, SubscriptionConfig
from hub.errors import ConfigError, PluginError
from hub.outcome import Outcome
from hub.plugins import build_handlers
from hub.redaction import redact_url

if TYPE_CHECKING:
    from hub.admin.store import SubscriptionStore
    from hub.deliver.worker import DeliveryWorker


class RoutesHost(Protocol):
    """What the subscription routes read of the process they serve (:class:`hub.app.Hub`)."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def worker(self) -> DeliveryWorker | None: ...

log = structlog.get_logger(__name__)


def read_only_reason(config: HubConfig, name: str) -> str:
    """Why the configured subscription ``name`` cannot be changed through the API, and how to
    change it: in the file it comes from, or, for the built-in default, by giving one."""
    if config.default_subscriptions:
        if config.source_path is None:
            where = "the hub was started without a configuration file"
            how = ("start the hub with one (--config FILE or HUB_CONFIG) that has a "
                   "`subscriptions:` list")
        else:
            where = f"{config.source_path} has no `subscriptions:` list"
            how = "add a `subscriptions:` list to that file"
        return (f"subscription {name!r} is the built-in default ({where}) and is read-only "
                f"here; to change or remove it, {how}: any list replaces the built-in "
                "console subscription (`subscriptions: []` for none)")
    if config.source_path is None:
        return (f"subscription {name!r} comes from the hub's configuration (HUB_SUBSCRIPTIONS "
                "in the environment) and is read-only here; change it there")
    return (f"subscription {name!r} comes from the configuration file {config.source_path} and "
            "is read-only here; change it there")


class SubscriptionRoutes:
    """The handlers behind ``/api/subscriptions``; :meth:`add_to` registers them."""

    def __init__(self, hub: RoutesHost, store: SubscriptionStore | None) -> None:
        self.hub = hub
        self.store = store

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/subscriptions", self._list)
        router.add_post("/api/subscriptions", self._create)
        router.add_get("/api/subscriptions/{name}", self._get)
        router.add_put("/api/subscriptions/{name}", self._replace)
        router.add_patch("/api/subscriptions/{name}", self._patch)
        router.add_delete("/api/subscriptions/{name}", self._delete)
        router.add_post("/api/subscriptions/{name}/test", self._test)

    def _config_subs(self) -> dict[str, SubscriptionConfig]:
        return {s.name: s for s in self.hub.config.subscriptions}

    def find(self, name: str) -> tuple[SubscriptionConfig, str]:
        """The subscription ``name`` and where it comes from (``config`` or ``runtime``)."""
        if name in (config := self._config_subs()):
            return config[name], "config"
        if self.store is not None and name in self.store.subscriptions:
            return self.store.subscriptions[name], "runtime"
        raise ApiError(404, f"no subscription named {name!r}", "name")

    def view_of(self, sub: SubscriptionConfig, source: str) -> dict[str, Any]:
        """``sub`` as the API shows it, secrets masked."""
        description = self.store.descriptions.get(sub.name) if self.store else None
        return view(sub, source, description)

    def _writable(self, name: str) -> SubscriptionStore:
        if name in self._config_subs():
            raise ApiError(409, read_only_reason(self.hub.config, name), "name")
        if self.store is None:
            raise ApiError(409, "runtime subscriptions are not enabled in this process")
        return self.store

    # --- the operations: the API's handlers below and the dashboard (hub.dashboard) call
    # these; each raises ApiError with the status and field the API answers with

    def views(self) -> list[dict[str, Any]]:
        """Every subscription, configured ones first, secrets masked."""
        items = [self.view_of(s, "config") for s in self.hub.config.subscriptions]
        if self.store is not None:
            items += [self.view_of(s, "runtime")
                      for _, s in sorted(self.store.subscriptions.items())]
        return items

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        description = description_of(body)
        name = body.get("name")
        if isinstance(name, str) and self.store is not None and (
                name in self.store.subscriptions):
            raise ApiError(409, f"subscription {name!r} exists; use PUT or PATCH to change it",
                           "name")
        sub = validate_subscription(body)
        store = self._writable(sub.name)
        await self._put(store, sub, description)
        log.info("admin.subscription_created", subscription=sub.name, handler=sub.handler)
        return self.view_of(sub, "runtime")

    async def update(self, name: str, body: dict[str, Any], *, patch: bool) -> dict[str, Any]:
        """Replace (``patch=False``) or merge-patch a runtime subscription; masked values
        sent back keep the stored ones."""
        current, _ = self.find(name)
        store = self._writable(name)
        stored = current.model_dump(mode="json")
        description = description_of(body, default=store.descriptions.get(name))
        body = unmask(body, stored)
        if body.setdefault("name", name) != name:
            raise ApiError(422, "the name in the body differs from the URL; subscriptions "
                                "cannot be renamed (create a new one)", "name")
        sub = validate_subscription(merge_patch(stored, body) if patch else body)
        await self._put(store, sub, description)
        log.info("admin.subscription_updated", subscription=name, patch=patch)
        return self.view_of(sub, "runtime")

    async def delete(self, name: str) -> None:
        self.find(name)
        if not await self._writable(name).delete(name):
            raise ApiError(404, f"no subscription named {name!r}", "name")
        log.info("admin.subscription_deleted", subscription=name)

    async def test_send(self, name: str) -> dict[str, Any]:
        """Deliver a sample event through the subscription's handler now; the outcome."""
        sub, _ = self.find(name)
        worker = self.hub.worker
        if worker is None:
            raise ApiError(409, "this process does not deliver (no deliver role); send the "
                                "test to a hub running `run` or `deliver`")
        event = sample_event(sub, redact_url(self.hub.config.mlflow.tracking_uri))
        handler = worker.handlers.get(sub.name)
        temporary = handler is None
        if handler is None:  # disabled here, or its handler failed to build: build one now
            try:
                handler = build_handlers([sub], worker.context)[sub.name]
            except (ConfigError, PluginError) as exc:
                raise ApiError(409, f"the handler cannot be built: {exc}") from None
        started = time.perf_counter()
        try:
            outcome = await handler.deliver(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin bug is reported, not raised
            outcome = Outcome.retry(f"handler raised {type(exc).__name__}")
        finally:
            if temporary:
                await handler.aclose()
        latency = outcome.latency_s if outcome.latency_s is not None \
            else time.perf_counter() - started
        log.info("admin.test_delivery", subscription=sub.name, event_id=event.id,
                 status=outcome.status.value, http_status=outcome.http_status)
        return {"event_id": event.id, "status": outcome.status.value,
                "http_status": outcome.http_status, "detail": outcome.detail,
                "latency_ms": round(latency * 1000, 2)}

    async def _put(self, store: SubscriptionStore, sub: SubscriptionConfig,
                   description: str | None) -> None:
        try:
            await store.put(sub, description=description)
        except (ConfigError, PluginError) as exc:
            field = getattr(exc, "field", None)
            raise ApiError(422, str(exc), field) from None

    # --- the HTTP handlers ------------------------------------------------------------

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"subscriptions": self.views()})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self.view_of(*self.find(request.match_info["name"])))

    async def _create(self, request: web.Request) -> web.Response:
        return web.json_response(await self.create(parse_object(await request.read())),
                                 status=201)

    async def _replace(self, request: web.Request) -> web.Response:
        return await self._update(request, patch=False)

    async def _patch(self, request: web.Request) -> web.Response:
        return await self._update(request, patch=True)

    async def _update(self, request: web.Request, *, patch: bool) -> web.Response:
        name = request.match_info["name"]
        body = parse_object(await request.read())
        return web.json_response(await self.update(name, body, patch=patch))

    async def _delete(self, request: web.Request) -> web.Response:
        await self.delete(request.match_info["name"])
        return web.Response(status=204)

    async def _test(self, request: web.Request) -> web.Response:
        return web.json_response(await self.test_send(request.match_info["name"]))


__all__ = ["SubscriptionRoutes"]
