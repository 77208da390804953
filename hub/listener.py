"""The hub's HTTP listener (admin API, health, metrics, ingest), hardened against hostile
and broken clients:

* **Read deadline.** A connection must send a whole request — headers, then body — within
  ``read_deadline_s`` of opening or of its previous answer; otherwise it is closed (slow
  clients such as slowloris cannot hold connections open). Idle keep-alive connections
  are closed after the same time.
* **Limits.** Header lines and fields at most 8 KiB, at most 100 headers; bodies are
  bounded by the application (``client_max_size``) and by each route.
* **Foreign Host headers.** Bound to a loopback address, the listener answers only requests
  whose ``Host`` is a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``): 421 otherwise,
  so a web page cannot reach it through DNS rebinding.
* **Quiet about garbage.** A malformed request is logged as one line
  (``listener.bad_request``), not an aiohttp traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from hub.errors import ConfigError

__all__ = ["Listener", "is_loopback"]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z``, ``::1`` (bracketed or not)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:8080`` → ``::1``, ``localhost:8080`` → localhost."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class _OneLineLogger(logging.Logger):
    """aiohttp's server logger: a malformed request becomes one warning, no traceback."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        remote = args[0] if args else None
        text = f"{type(error).__name__}: {error}" if error else str(msg)
        log.warning("listener.bad_request", remote=remote, error=" ".join(text.split())[:200])


_SERVER_LOGGER = _OneLineLogger("hub.listener.aiohttp")


class _Connection(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol with the read deadline."""

    def __init__(self, inner: RequestHandler, listener: Listener) -> None:
        self._inner = inner
        self._listener = listener
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def arm(self) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._listener.read_deadline_s, self.expire, "request")

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def expire(self, what: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            peer = self.transport.get_extra_info("peername")
            log.info("listener.slow_client_closed", remote=peer and peer[0], waiting_for=what,
                     read_deadline_s=self._listener.read_deadline_s)
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._listener.connections[transport] = self
        self._inner.connection_made(transport)
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.transport is not None:
            self._listener.connections.pop(self.transport, None)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> None:
        self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class Listener:
    """The hardened listener. Put :meth:`guard` first among the application's middlewares,
    then ``async with listener.serving(app): listener.url``."""

    def __init__(self, host: str, port: int, *, read_deadline_s: float,
                 field: str = "admin.port") -> None:
        self.host = host
        self.port = port
        self.read_deadline_s = read_deadline_s
        self.loopback_only = is_loopback(host)
        self.connections: dict[asyncio.Transport, _Connection] = {}
        self.url = ""
        self._field = field
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Read deadline for the body, and the Host check."""
        conn = self.connections.get(request.transport)  # type: ignore[arg-type]
        body_timer = None
        if conn is not None:
            conn.disarm()  # the headers are in
            if not request.content.is_eof():
                body_timer = asyncio.get_running_loop().call_later(
                    self.read_deadline_s,
                    lambda: None if request.content.is_eof() else conn.expire("body"))
        try:
            if self.loopback_only and not is_loopback(_host_name(request.host)):
                return web.json_response(
                    {"error": "this listener answers only requests to a loopback host "
                              "(localhost, 127.0.0.1, [::1])", "field": "Host"}, status=421)
            return await handler(request)
        finally:
            if body_timer is not None:
                body_timer.cancel()
            if conn is not None:
                conn.arm()  # the next request must come within the deadline too

    async def start(self, app: web.Application) -> None:
        """Serve ``app``; ConfigError naming the port field if it cannot listen."""
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, logger=_SERVER_LOGGER,
            keepalive_timeout=self.read_deadline_s, max_line_size=8190, max_field_size=8190,
            max_headers=100)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(server(), self), self.host, self.port, reuse_address=True)
        except OSError as exc:
            await self.aclose()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                              field=self._field) from None
        port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for transport in list(self.connections):
                transport.abort()
            await server.wait_closed()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
