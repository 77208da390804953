"""Outgoing HTTP for handlers: shared ``aiohttp`` sessions behind an SSRF guard.

A subscription's URL comes from configuration, so by default the hub refuses to reach
private, loopback, link-local, multicast, reserved or unspecified addresses (IPv4 and IPv6,
including IPv4 addresses wrapped in IPv6: mapped, 6to4, NAT64). ``delivery.allowed_networks``
(CIDRs) opens some of them, e.g. ``["10.0.0.0/8"]``; tests open ``127.0.0.0/8``.

The guard has two layers, because aiohttp never hands IP-literal hosts
(``http://127.0.0.1:8080``, ``http://[::1]/``) to the resolver:

* :class:`GuardedResolver` drops forbidden addresses from what a name resolves to, and
  refuses the name when none is left;
* a ``socket_factory`` on the connector checks every address actually dialed, right before
  ``connect()``: IP literals, and any address however it was obtained (no DNS-rebinding gap).

A refusal is an :class:`SsrfRefused` (an ``OSError``), which aiohttp surfaces as a
``ClientConnectorError`` (``ClientConnectorDNSError`` from the resolver) whose ``os_error``
— or ``__cause__`` chain — holds it; :func:`find_refusal` digs it out. Sessions never follow
proxies from the environment (``trust_env=False``): a proxy would be the peer we check.

Sessions never follow redirects either, whatever a caller (or a library such as slack-sdk)
asks: a redirect would re-send the request, custom headers included, to a host nobody
configured, and turn a POST into a GET that "succeeds". A session middleware
(:func:`refuse_redirects`) turns every answer aiohttp could follow — 301, 302, 303, 307 or
308 with a ``Location`` — into :class:`RedirectRefused` (an ``aiohttp.ClientError``:
"redirect to <location> not followed", with the status), which :func:`find_refusal` also
finds; handlers treat it, like any 3xx answer, as a final failure. (A middleware, not a
trace hook: a session with trace configs sends seven trace signals per request, ~35 µs of
CPU, on every delivery.) A 3xx without a ``Location`` reaches the caller as a response;
:func:`redirect_detail` words it the same way.

:func:`parse_retry_after` lives here too: any handler talking HTTP may need it.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

if TYPE_CHECKING:  # aiohttp's own dependency; only its type names are used
    from aiohappyeyeballs import AddrInfoType, SocketFactoryType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_MAX_LOCATION_CHARS = 300
USER_AGENT = "registry-hub"


class SsrfRefused(OSError):
    """An outgoing connection to a forbidden address was refused before it was made."""

    def __init__(self, host: str, address: str) -> None:
        self.host = host
        self.address = address
        where = address if host == address else f"{host} resolves to {address}"
        super().__init__(
            f"refused to connect: {where}, a private/loopback/link-local/reserved address; "
            "add a CIDR containing it to delivery.allowed_networks to allow it"
        )


def redirect_detail(status: int, location: str | None) -> str:
    """The one wording of a redirect the hub did not follow. Pure."""
    where = location.strip()[:_MAX_LOCATION_CHARS] if location and location.strip() \
        else "(no Location header)"
    return (f"redirect to {where} not followed (HTTP {status}): the hub never follows "
            "redirects; configure the final URL")


class RedirectRefused(aiohttp.ClientError):
    """A response the session would have followed as a redirect ended the request instead."""

    def __init__(self, status: int, location: str | None) -> None:
        self.status = status
        self.location = location
        self.address = location or ""  # where it would have gone (as SsrfRefused.address)
        super().__init__(redirect_detail(status, location))


_FOLLOWABLE = frozenset({301, 302, 303, 307, 308})


async def refuse_redirects(request: aiohttp.ClientRequest,
                           handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
    """Session middleware: an answer aiohttp could follow as a redirect ends the request
    as :class:`RedirectRefused` (the response is closed), whatever ``allow_redirects`` the
    caller passed. It runs before aiohttp's own redirect handling, once per request."""
    response = await handler(request)
    if response.status not in _FOLLOWABLE:
        return response
    location = response.headers.get("Location") or response.headers.get("URI")
    if location is None:
        return response  # aiohttp would not follow it either: the caller words the 3xx
    response.close()
    try:
        location = str(request.url.join(URL(location)))
    except ValueError:
        pass  # not a URL: reported as given
    raise RedirectRefused(response.status, location)


def parse_networks(cidrs: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(
        c if not isinstance(c, str) else ipaddress.ip_network(c, strict=False) for c in cidrs
    )


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition address carries (mapped, 6to4, NAT64)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _non_public(ip: IPAddress) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def is_forbidden(ip: str | IPAddress, allowed: Iterable[str | IPNetwork] = ()) -> bool:
    """Whether the SSRF guard refuses ``ip``. Pure.

    Forbidden: any non-public address; an IPv6 address wrapping an IPv4 one (mapped, 6to4,
    NAT64) is judged by the IPv4 address. ``allowed`` opens an address when it (or the IPv4
    address it wraps) lies in one of the networks.
    Unparseable input is forbidden.
    """
    try:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        addr = ipaddress.IPv6Address(addr.compressed.split("%", 1)[0])
    inner = _embedded_ipv4(addr)
    if not _non_public(addr if inner is None else inner):
        return False
    candidates: list[IPAddress] = [addr] if inner is None else [addr, inner]
    networks = parse_networks(allowed)
    return not any(
        a in net for a in candidates for net in networks if a.version == net.version
    )


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (default: aiohttp's ``ThreadedResolver``) and drops forbidden
    addresses; a name left with none is refused. Only permitted addresses are ever dialed,
    so a name resolving to both a public and a private address cannot reach the latter."""

    def __init__(self, allowed: Sequence[IPNetwork], inner: AbstractResolver | None = None):
        self._allowed = allowed
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        permitted = [r for r in results if not is_forbidden(r["host"], self._allowed)]
        if results and not permitted:
            raise SsrfRefused(host, results[0]["host"])
        return permitted

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(allowed: Sequence[IPNetwork]) -> SocketFactoryType:
    """A connector ``socket_factory`` that refuses to create a socket to a forbidden peer."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        if is_forbidden(address, allowed):
            raise SsrfRefused(address, address)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def find_refusal(exc: BaseException) -> SsrfRefused | RedirectRefused | None:
    """The refusal behind an aiohttp error, if a session guard caused it: the SSRF guard
    (:class:`SsrfRefused`) or the redirect guard (:class:`RedirectRefused`). Either is a
    final failure, never worth a retry."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SsrfRefused | RedirectRefused):
            return current
        inner = getattr(current, "os_error", None)
        if isinstance(inner, SsrfRefused):
            return inner
        current = current.__cause__ or current.__context__
    return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date. Pure.

    Dates in the past give ``0``; missing or unparseable values give ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" in a date means UTC, as does HTTP-date's "GMT"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HttpClients:
    """Owns the hub's outgoing HTTP sessions: one per TLS-verification setting, created on
    first use (inside the running loop) and closed by :meth:`aclose` (idempotent).

    ``HttpClients(allowed_networks=[...]).session`` is the factory the hub lends handlers
    as ``HandlerContext.http_session``; handlers must not close what it returns. Its
    sessions are SSRF-guarded and never follow a redirect (:class:`RedirectRefused`).

    The connection pool has no overall cap (``limit=0``): concurrency is already bounded per
    subscription (``delivery.max_in_flight``), and a shared cap would let hanging endpoints
    take every connection and stall healthy subscriptions.
    """

    def __init__(
        self,
        allowed_networks: Iterable[str] = (),
        *,
        limit: int = 0,
        default_timeout_s: float = 30.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allowed_networks = parse_networks(allowed_networks)
        self._limit = limit
        self._timeout = aiohttp.ClientTimeout(total=default_timeout_s)
        self._inner_resolver = resolver
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._resolvers: list[GuardedResolver] = []
        self._closed = False

    def session(self, verify_tls: bool = True) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("HttpClients is closed")
        existing = self._sessions.get(verify_tls)
        if existing is not None:
            return existing
        resolver = GuardedResolver(self.allowed_networks, self._inner_resolver)
        self._resolvers.append(resolver)
        connector = aiohttp.TCPConnector(
            resolver=resolver,
            socket_factory=guarded_socket_factory(self.allowed_networks),
            ssl=verify_tls,
            limit=self._limit,
        )
        created = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            middlewares=(refuse_redirects,),
        )
        self._sessions[verify_tls] = created
        return created

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        resolvers, self._resolvers = self._resolvers, []
        for session in sessions:
            await session.close()
        if self._inner_resolver is None:
            for resolver in resolvers:
                await resolver.close()

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = [
    "GuardedResolver",
    "HttpClients",
    "RedirectRefused",
    "SsrfRefused",
    "find_refusal",
    "guarded_socket_factory",
    "is_forbidden",
    "parse_networks",
    "parse_retry_after",
    "redirect_detail",
    "refuse_redirects",
]
