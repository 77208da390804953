"""Building blocks of admin API tests: a hub configuration with the admin listener on a
free port, a running hub as ``registry-hub deliver`` composes it, stage-transition events,
console subscriptions, and raw API calls that remember every answer (to look for leaked
secrets)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp

from hub.admin.client import HubClient
from hub.admin.server import AdminServer
from hub.admin.store import SubscriptionStore
from hub.app import Hub, Roles
from hub.config import HubConfig, SubscriptionConfig
from hub.events import Event

ADMIN_TOKEN = "admin-token-" + uuid.uuid4().hex


def admin_config(bootstrap: str, topic: str, subscriptions: list[dict[str, Any]],
                 **overrides: Any) -> HubConfig:
    return HubConfig(**{
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic, "partitions": 3,
                  "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
        "delivery": {"retry_schedule_s": [0.1], "jitter": 0, "start_from": "earliest",
                     "allowed_networks": ["127.0.0.0/8"], "grace_period_s": 2},
        "admin": {"host": "127.0.0.1", "port": 0, "token": ADMIN_TOKEN},
        "subscriptions": subscriptions,
        **overrides,
    })


def transition(n: int, to_stage: str, model: str = "iris") -> Event:
    return Event(id=f"evt-{n}", type="model_version.stage_transitioned", model=model,
                 version=str(n), time=datetime.now(UTC), source="http://mlflow",
                 data={"model_name": model, "version": str(n), "from_stage": "None",
                       "to_stage": to_stage, "tags": {}, "aliases": []})


def console_subscription(name: str) -> SubscriptionConfig:
    return SubscriptionConfig(name=name, handler="console")


@asynccontextmanager
async def running_hub(config: HubConfig
                      ) -> AsyncIterator[tuple[Hub, SubscriptionStore, AdminServer]]:
    """What ``registry-hub deliver`` composes (hub → worker → store → admin), running."""
    async with Hub(config, Roles(detect=False)) as hub:
        assert hub.worker is not None and hub.store is not None and hub.admin is not None
        run = asyncio.create_task(hub.run())
        try:
            await hub.worker.wait_ready()
            yield hub, hub.store, hub.admin
        finally:
            hub.stop()
            await asyncio.wait_for(run, 30)


class Api:
    """Raw HTTP calls that remember every response body (to look for leaked secrets)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.bodies = http, url, []  # type: ignore[var-annotated]

    async def __call__(self, method: str, path: str, body: Any = None, *,
                       token: str | None = ADMIN_TOKEN, raw: bytes | None = None
                       ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if method in ("POST", "PUT", "PATCH"):
            headers["Content-Type"] = "application/json"
        async with self.http.request(method, self.url + path, data=data,
                                     headers=headers) as resp:
            text = await resp.text()
        self.bodies.append(text)
        return resp.status, json.loads(text) if text else None

    async def client(self, client: HubClient, call: Callable[..., Any], *args: Any,
                     **kwargs: Any) -> Any:
        result = await asyncio.to_thread(call, *args, **kwargs)
        self.bodies.append(json.dumps(result))
        return result
