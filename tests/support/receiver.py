"""A scriptable webhook receiver: a real aiohttp server on 127.0.0.1 that records what it
got and verifies Standard Webhooks signatures with the ``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy0xMjM0NTY3ODkw"


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    verified: bool


@dataclass
class Receiver:
    """Paths: ``/ok``; ``/slow/<ms>`` answers 200 after that delay; ``/fail/<name>``
    answers 500 while ``failures[name] > 0``; ``/hang`` never answers; ``/status/<code>``
    answers that code; ``/down/<name>`` answers 503 while ``name`` is in ``down``;
    ``/busy/<name>/<s>`` answers 429 with ``Retry-After: <s>`` while ``failures[name] > 0``."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    secret: str = SECRET

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(self.secret).verify(raw, headers)
            verified = True
        except Exception:
            verified = False
        parts = request.path.strip("/").split("/")
        status = 200
        if parts[0] == "hang":
            await asyncio.Event().wait()
        elif parts[0] == "slow":
            await asyncio.sleep(int(parts[1]) / 1000)  # a slow endpoint, not a test wait
        elif parts[0] == "fail" and self.failures.get(parts[1], 0) > 0:
            self.failures[parts[1]] -= 1
            status = 500
        elif parts[0] == "status":
            status = int(parts[1])
        elif parts[0] == "busy" and self.failures.get(parts[1], 0) > 0:
            self.failures[parts[1]] -= 1
            return web.Response(status=429, headers={"Retry-After": parts[2]})
        elif parts[0] == "down" and parts[1] in self.down:
            status = 503
        if status < 300:
            async with self.changed:
                self.hits.append(Hit(request.path, headers, json.loads(raw), time.monotonic(),
                                     verified))
                self.changed.notify_all()
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def delivered(self, path_prefix: str = "") -> list[Hit]:
        return [h for h in self.hits if h.path.startswith(path_prefix)]

    async def wait_for(self, count: int, path_prefix: str = "", timeout_s: float = 30) -> list[Hit]:
        async def enough() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: len(self.delivered(path_prefix)) >= count)

        try:
            await asyncio.wait_for(enough(), timeout_s)
        except TimeoutError:
            got = len(self.delivered(path_prefix))
            raise AssertionError(f"{got} of {count} deliveries to {path_prefix!r}") from None
        return self.delivered(path_prefix)


@asynccontextmanager
async def running_receiver(
    before: Callable[[web.Request], Awaitable[None]] | None = None,
) -> AsyncIterator[Receiver]:
    """A receiver on a free loopback port; ``before(request)``, if given, runs first (e.g. a
    gate that holds requests)."""
    receiver = Receiver()

    async def handle(request: web.Request) -> web.StreamResponse:
        if before is not None:
            await before(request)
        return await receiver.handle(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
