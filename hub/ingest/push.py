"""``POST /ingest/mlflow``: MLflow's own webhooks, turned into events at once (the push path).

A tag or alias push states its whole change (model, version, key, value): the hub applies
it to the model state it holds and publishes at once, then re-reads the model shortly after
(:mod:`hub.detect.facts`). Any other registry push (a creation: its payload lacks the
creation time, user and status) re-reads that model now (``Detector.refresh_model``). Either
way the event is the one the poll would have produced, diffed against that model's state
only and without waiting for a full scan, and no poll publishes it again
(:mod:`hub.detect.pushes`). Changes MLflow never pushes (stage transitions, deletions,
descriptions, registered-model tags) are found by the re-read after a push about the same
model, or by the next full scan.

Checks run in this order: secret configured (403), size (413), signature and timestamp
(401), already-seen delivery id (200, duplicate), body shape (400), event kind (202/200).
Answers (MLflow retries 429 and 5xx only, so bad input never gets a 5xx):

====  =====================================================================================
200   known registry event: ``{"published": n, "event_ids": [...]}``; an exact replay of a
      delivery already handled (same ``X-MLflow-Delivery-Id``): ``published 0, duplicate``
202   accepted, nothing published here: unknown entity/action (``ingest.ignored``), no
      detector in this process, or the registry read failed (the next poll catches up)
400   body unreadable (bad Content-Encoding) or not a JSON object with ``entity``,
      ``action``, ``data`` (and a non-empty string ``data.name`` for registry events)
401   signature headers missing/malformed, signature wrong, timestamp outside
      ``ingest.tolerance_s`` (either direction)
403   ``ingest.mlflow_secret`` not configured: unsigned pushes are never accepted
413   body over ``ingest.max_body_bytes`` (Content-Length, or counted while reading)
====  =====================================================================================
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from hub.config import HubConfig
from hub.detect.facts import Fact, fact_of
from hub.errors import SourceError
from hub.events import Event
from hub.signing import (
    MLFLOW_DELIVERY_ID,
    MLFLOW_SIGNATURE,
    MLFLOW_TIMESTAMP,
    Reason,
    SignatureError,
    verify_mlflow,
)

log = structlog.get_logger(__name__)

INGEST_PATH = "/ingest/mlflow"
REGISTRY_EVENTS: frozenset[tuple[str, str]] = frozenset({
    ("registered_model", "created"),
    ("model_version", "created"),
    ("model_version_tag", "set"),
    ("model_version_tag", "deleted"),
    ("model_version_alias", "created"),
    ("model_version_alias", "deleted"),
    ("prompt", "created"),
    ("prompt_version", "created"),
    ("prompt_tag", "set"),
    ("prompt_tag", "deleted"),
    ("prompt_version_tag", "set"),
    ("prompt_version_tag", "deleted"),
    ("prompt_alias", "created"),
    ("prompt_alias", "deleted"),
})
"""What MLflow pushes about its model and prompt registries (``mlflow.entities.webhook``);
its budget-policy events are acknowledged and ignored."""

REMEMBERED_DELIVERIES = 10_000
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,200}")  # MLflow sends a uuid4
_TIMESTAMP = re.compile(r"[0-9]{1,15}")  # unix seconds
_SIGNATURE = re.compile(r"[\x20-\x7e]{1,2000}")
_SHOWN = 100  # longest entity/action echoed into a log line


class PushHandler(Protocol):
    async def pushed(self, name: str, fact: Fact | None = None) -> list[Event]: ...


class IngestHost(Protocol):
    """What the endpoint needs from :class:`hub.app.Hub` (read at request time: the
    detector appears when the hub has started)."""

    @property
    def config(self) -> HubConfig: ...

    @property
    def detector(self) -> PushHandler | None: ...


# --- pure parts ---------------------------------------------------------------------------


class MalformedPush(ValueError):
    """The body is not an MLflow webhook payload."""


@dataclass(frozen=True)
class Push:
    entity: str
    action: str
    name: str | None  # data.name; checked to be a non-empty string for registry events
    fact: Fact | None = None  # what a tag or alias push states (hub.detect.facts)

    @property
    def event(self) -> str:
        return f"{self.entity}.{self.action}"

    @property
    def registry(self) -> bool:
        return (self.entity, self.action) in REGISTRY_EVENTS


def parse_push(body: bytes) -> Push:
    """``{"entity", "action", "timestamp", "data": {"name", ...}}`` → :class:`Push`."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # incl. bad UTF-8, too many digits, deep nesting
        raise MalformedPush("body is not JSON") from None
    if not isinstance(obj, dict):
        raise MalformedPush("body is not a JSON object")
    entity, action, data = obj.get("entity"), obj.get("action"), obj.get("data")
    if not isinstance(entity, str) or not isinstance(action, str):
        raise MalformedPush("'entity' and 'action' must be strings")
    if not isinstance(data, dict):
        raise MalformedPush("'data' must be an object")
    name = data.get("name")
    push = Push(entity, action, name if isinstance(name, str) else None,
                fact_of(entity, action, data, obj.get("timestamp")))
    if push.registry and not push.name:
        raise MalformedPush("'data.name' must be a non-empty string")
    return push


def signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The three signature headers, or :class:`SignatureError` for values MLflow never sends,
    caught before any arithmetic or encoding on them (a 5,000-digit timestamp, non-ASCII ids).
    ``headers`` is matched case-insensitively by the caller's mapping (aiohttp's is)."""
    found = {}
    for header, shape in ((MLFLOW_DELIVERY_ID, _DELIVERY_ID), (MLFLOW_TIMESTAMP, _TIMESTAMP),
                          (MLFLOW_SIGNATURE, _SIGNATURE)):
        value = headers.get(header)
        if not value:
            raise SignatureError(Reason.MISSING_HEADER, f"missing header {header}")
        if not shape.fullmatch(value):
            reason = Reason.BAD_TIMESTAMP if header == MLFLOW_TIMESTAMP else Reason.BAD_SIGNATURE
            raise SignatureError(reason, f"{header} is malformed")
        found[header] = value
    return found


class DeliveryIds:
    """A bounded LRU of delivery ids already handled. MLflow re-sends a delivery with the
    same id (urllib3 retries after a timeout or a 5xx); an attacker replaying a captured
    request does the same within the timestamp tolerance."""

    def __init__(self, capacity: int = REMEMBERED_DELIVERIES) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def claim(self, delivery_id: str) -> bool:
        """True the first time ``delivery_id`` is seen; False for a repeat."""
        if delivery_id in self._seen:
            self._seen.move_to_end(delivery_id)
            return False
        self._seen[delivery_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)


# --- HTTP edge ----------------------------------------------------------------------------


class TooLarge(Exception):
    pass


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The body, or :class:`TooLarge` as soon as it passes ``limit`` bytes (announced by
    Content-Length, or counted while streaming: chunked, or decompressed when the client
    sent a Content-Encoding, so a compression bomb stops at the limit too)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=status)


class MlflowIngest:
    def __init__(self, hub: IngestHost, *, clock: Callable[[], float] = time.time,
                 remember: int = REMEMBERED_DELIVERIES) -> None:
        self._hub = hub
        self._clock = clock
        self._seen = DeliveryIds(remember)

    async def handle(self, request: web.Request) -> web.Response:
        cfg = self._hub.config.ingest
        peer = request.remote
        if cfg.mlflow_secret is None:
            log.warning("ingest.rejected", status=403, reason="no_secret", peer=peer)
            return _answer(403, error="ingest disabled: set ingest.mlflow_secret "
                                      "(HUB_INGEST__MLFLOW_SECRET) to the MLflow webhook's secret")
        try:
            body = await read_bounded(request, cfg.max_body_bytes)
        except TooLarge:
            log.warning("ingest.rejected", status=413, reason="too_large", peer=peer,
                        limit=cfg.max_body_bytes)
            return _answer(413, error="body too large", limit=cfg.max_body_bytes)
        except web.RequestPayloadError:  # e.g. a Content-Encoding that does not decode
            log.warning("ingest.rejected", status=400, reason="unreadable_body", peer=peer)
            return _answer(400, error="body could not be read")
        try:
            headers = signature_headers(request.headers)
            verify_mlflow(cfg.mlflow_secret.get_secret_value(), headers, body,
                          now=self._clock(), tolerance_s=cfg.tolerance_s)
        except SignatureError as exc:
            log.warning("ingest.rejected", status=401, reason=exc.reason.value, peer=peer,
                        detail=str(exc))
            return _answer(401, error="unauthorized", reason=exc.reason.value)
        delivery_id = headers[MLFLOW_DELIVERY_ID]
        if not self._seen.claim(delivery_id):
            log.info("ingest.duplicate", delivery_id=delivery_id)
            return _answer(200, published=0, event_ids=[], duplicate=True)
        try:
            push = parse_push(body)
        except MalformedPush as exc:
            log.warning("ingest.rejected", status=400, reason="malformed", detail=str(exc),
                        delivery_id=delivery_id)
            return _answer(400, error=str(exc))
        return await self._dispatch(push, delivery_id)

    async def _dispatch(self, push: Push, delivery_id: str) -> web.Response:
        if not push.registry:
            log.info("ingest.ignored", mlflow_event=push.event[:_SHOWN], delivery_id=delivery_id)
            return _answer(202, published=0, ignored="not a model or prompt registry event")
        assert push.name is not None
        detector = self._hub.detector
        if detector is None:
            log.info("ingest.deferred", reason="no_detector", mlflow_event=push.event,
                     model=push.name, delivery_id=delivery_id)
            return _answer(202, published=0,
                           deferred="no detector in this process; the poll will report it")
        try:
            events = await detector.pushed(push.name, push.fact)
        except SourceError as exc:
            log.warning("ingest.deferred", reason="registry_unreachable", error=str(exc),
                        mlflow_event=push.event, model=push.name, delivery_id=delivery_id)
            return _answer(202, published=0,
                           deferred="registry unreachable; the next poll will report it")
        log.info("ingest.received", mlflow_event=push.event, model=push.name,
                 published=len(events), delivery_id=delivery_id)
        return _answer(200, published=len(events), event_ids=[e.id for e in events])


def add_ingest_routes(app: web.Application, hub: IngestHost, *,
                      clock: Callable[[], float] = time.time) -> None:
    """Register ``POST /ingest/mlflow`` on ``app`` (the admin server's app)."""
    app.router.add_post(INGEST_PATH, MlflowIngest(hub, clock=clock).handle)


__all__ = [
    "INGEST_PATH",
    "REGISTRY_EVENTS",
    "DeliveryIds",
    "IngestHost",
    "MalformedPush",
    "MlflowIngest",
    "Push",
    "add_ingest_routes",
    "parse_push",
    "read_bounded",
    "signature_headers",
]
