"""The admin HTTP API: health, metrics, subscriptions, deliveries, dead letters.

One hardened listener (:mod:`hub.listener`) on ``admin.host:admin.port`` (``/ingest/mlflow``
shares it). A bearer token guards every ``/api/*`` route, always (:mod:`hub.admin.token`:
configured, or generated and kept); ``/healthz``, ``/readyz``, ``/metrics`` and the signed
``/ingest`` stay open. Requests that change state (POST, PUT, PATCH under ``/api``) must be
``application/json``, so no HTML form can forge one. Every answer is JSON
(``{"error": ..., "field": ...}`` on failure): 400 malformed request (bad JSON, not an object,
bad query parameter), 401 missing or wrong token, 404 unknown subscription, 409 read-only
(config-file) subscription or name taken, 415 not JSON, 421 a foreign ``Host`` on a loopback
listener, 422 a well-formed subscription that fails validation, 503 Kafka unavailable (and
``/readyz`` when a check fails). Bad input never yields a 5xx. The subscription routes are
in :mod:`hub.admin.subscription_routes`, the pure body handling in :mod:`hub.admin.bodies`.

Secrets never leave: subscription options are shown with every secret (``SecretStr``
fields, ``secret``/``token``/``password``/``authorization`` keys, header values) as
``"***"``; sending ``"***"`` back in a PUT/PATCH keeps the stored value.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.admin.bodies import ApiError, parse_object
from hub.admin.host import AdminHost
from hub.admin.subscription_routes import SubscriptionRoutes
from hub.admin.token import AdminToken, admin_token
from hub.bus import connection_options, recent_records
from hub.dashboard import Dashboard
from hub.deliver.jobs import Attempt
from hub.deliver.replay import dead_letters, replay_dead_letters
from hub.errors import BusError
from hub.ingest.push import add_ingest_routes
from hub.listener import Listener
from hub.outcome import Status

if TYPE_CHECKING:
    from hub.admin.store import SubscriptionStore


log = structlog.get_logger(__name__)

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
_WITH_BODY = {"POST", "PUT", "PATCH"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _query_limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}", "limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return limit


class _ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscription: str | None = None
    event_id: str | None = None


# --- the server -----------------------------------------------------------------------------


class AdminServer:
    """``async with AdminServer(hub, store=store) as admin: admin.url``."""

    def __init__(self, hub: AdminHost, *, store: SubscriptionStore | None = None,
                 token: AdminToken | None = None, stale_after_s: float | None = None,
                 broker_check_ttl_s: float = 2.0) -> None:
        self.hub = hub
        self.store = store
        cfg = hub.config
        # a few poll intervals: an MLflow or Kafka outage shows within seconds
        self._stale_after_s = stale_after_s if stale_after_s is not None \
            else max(3 * cfg.detector.poll_interval_s, 10.0)
        self._broker_ttl_s = broker_check_ttl_s
        self._broker_checked: tuple[float, dict[str, Any]] | None = None
        self._broker_lock = asyncio.Lock()
        self._reads = asyncio.Semaphore(4)  # bounds concurrent topic scans
        self.token = token or admin_token(cfg)
        self._token = self.token.value.encode()
        self._listener = Listener(cfg.admin.host, cfg.admin.port,
                                  read_deadline_s=cfg.admin.read_deadline_s)
        self.url = ""
        self._closed = False

    async def __aenter__(self) -> AdminServer:
        await self._listener.start(self.build_app())
        self.url = self._listener.url
        log.info("admin.started", url=self.url, token_origin=self.token.origin,
                 loopback_only=self._listener.loopback_only)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._listener.aclose()

    def build_app(self) -> web.Application:
        client_max_size = max(self.hub.config.ingest.max_body_bytes, 1024 ** 2)
        app = web.Application(client_max_size=client_max_size,
                              middlewares=[self._listener.guard, self._errors, self._auth])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/readyz", self._readyz)
        r.add_get("/metrics", self._metrics)
        subscriptions = SubscriptionRoutes(self.hub, self.store)
        subscriptions.add_to(r)  # /api/subscriptions[/{name}[/test]]
        r.add_get("/api/deliveries", self._deliveries)
        r.add_get("/api/dead-letters", self._dead_letters)
        r.add_post("/api/dead-letters/replay", self._replay)
        add_ingest_routes(app, self.hub)  # POST /ingest/mlflow: open, checked by signature
        # the web UI: /, /login, /events, /models, /subscriptions, /dead-letters, /static
        Dashboard(self.hub, self.store, subscriptions, self.token.value).add_to(r)
        return app

    # --- middleware -------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message, exc.field)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
            return _error(exc.status, exc.reason, headers=headers)
        except BusError as exc:
            log.warning("admin.bus_unavailable", path=request.path, error=str(exc))
            return _error(503, "Kafka is unavailable; try again")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("admin.request_failed", method=request.method, path=request.path)
            return _error(500, "internal error; see the hub's log")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _under_api(request):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), self._token):
                return _error(401, "missing or wrong bearer token (admin.token, or the one "
                                   "kept in <state_dir>/admin-token)",
                              headers={"WWW-Authenticate": 'Bearer realm="registry-hub"'})
            if request.method in _WITH_BODY and request.content_type != "application/json":
                return _error(415, "send JSON: Content-Type must be application/json",
                              "Content-Type")
        return await handler(request)

    # --- health and metrics -----------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = {"broker": await self._broker_check(), "detector": self._detector_check(),
                  "worker": self._worker_check()}
        failed = [name for name, check in checks.items() if not check["ok"]]
        return web.json_response(
            {"status": "not_ready" if failed else "ready", "failed": failed, "checks": checks},
            status=503 if failed else 200)

    async def _broker_check(self) -> dict[str, Any]:
        async with self._broker_lock:
            now = time.monotonic()
            if self._broker_checked and now - self._broker_checked[0] < self._broker_ttl_s:
                return self._broker_checked[1]
            client = AIOKafkaClient(
                **connection_options(self.hub.config.kafka, self.hub.bootstrap_servers),
                request_timeout_ms=3000)
            try:
                await asyncio.wait_for(client.bootstrap(), 5)
                result = {"ok": True, "detail": f"{len(client.cluster.brokers())} broker(s)"}
            except (KafkaError, OSError, TimeoutError) as exc:
                result = {"ok": False, "detail": f"metadata request failed: {type(exc).__name__}"}
            finally:
                await client.close()
            self._broker_checked = (time.monotonic(), result)
            return result

    def _detector_check(self) -> dict[str, Any]:
        detector = self.hub.detector
        if detector is None:
            return {"ok": True, "detail": "no detector in this process"}
        election = self.hub.election
        if election is not None and not election.is_leader:
            if election.leader_elsewhere:
                return {"ok": True, "detail": "standby: another detector is the elected leader"}
            return {"ok": False, "detail": "no detector leads: the election has not settled "
                    f"(the broker is away, or lost the coordination topic {election.topic})"}
        return detector.health(self._stale_after_s)

    def _worker_check(self) -> dict[str, Any]:
        worker = self.hub.worker
        if worker is None:
            return {"ok": True, "detail": "no delivery worker in this process"}
        return worker.health()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.hub.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- deliveries and dead letters --------------------------------------------------

    async def _deliveries(self, request: web.Request) -> web.Response:
        limit = _query_limit(request)
        status = request.query.get("status")
        if status is not None and status not in {s.value for s in Status}:
            raise ApiError(400, f"status must be one of {', '.join(s.value for s in Status)}",
                           "status")
        subscription = request.query.get("subscription")
        event_id = request.query.get("event_id")
        cfg = self.hub.config
        async with self._reads:
            records = await recent_records(cfg.kafka, self.hub.bootstrap_servers,
                                           cfg.deliveries_topic, limit)
        found = []
        for record in sorted(records, key=lambda r: (r.timestamp, r.offset), reverse=True):
            try:
                attempt = Attempt.decode(record.value)
            except (ValueError, TypeError):
                continue
            if subscription not in (None, attempt.subscription) or status not in (
                    None, attempt.status) or event_id not in (None, attempt.event_id):
                continue
            found.append({k: v for k, v in attempt.__dict__.items() if k != "extra"})
        return web.json_response({"deliveries": found[:limit]})

    async def _dead_letters(self, request: web.Request) -> web.Response:
        """Each (event, subscription) once, at its latest state (dead, replayed, delivered),
        newest change first; ``?state=`` filters by it."""
        limit = _query_limit(request)
        try:
            async with self._reads:
                letters = await dead_letters(self.hub.config, self.hub.bootstrap_servers,
                                             subscription=request.query.get("subscription"),
                                             event_id=request.query.get("event_id"),
                                             state=request.query.get("state"))
        except ValueError as exc:
            raise ApiError(400, str(exc), "state") from None
        return web.json_response({"dead_letters": [s.summary() for s in letters[:limit]]})

    async def _replay(self, request: web.Request) -> web.Response:
        """Replays the matching entries whose latest state is ``dead`` (any state when
        ``event_id`` is given); says how many it enqueued and how many it skipped, why."""
        body = parse_object(await request.read(), empty={})
        try:
            ask = _ReplayRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ApiError(422, first["msg"], ".".join(str(p) for p in first["loc"])) from None
        async with self._reads:
            result = await replay_dead_letters(self.hub.config, self.hub.bootstrap_servers,
                                               subscription=ask.subscription,
                                               event_id=ask.event_id)
        skipped = {**result.skipped, **({"missing": result.missing} if result.missing else {})}
        log.info("admin.replay", subscription=ask.subscription, event_id=ask.event_id,
                 enqueued=len(result.replayed), skipped=skipped)
        return web.json_response({
            "enqueued": len(result.replayed),
            "skipped": sum(skipped.values()),
            "skipped_by_reason": skipped,
            "replayed": [{"subscription": s.subscription, "event_id": s.event_id}
                         for s in result.replayed]}, status=202)


def _under_api(request: web.Request) -> bool:
    """By the matched route's template (immune to percent-encoding tricks); unmatched paths
    by their decoded path, so unknown /api paths answer 401, not 404."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return path == "/api" or path.startswith("/api/")


def _error(status: int, message: str, field: str | None = None, *,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


__all__ = ["AdminServer"]
